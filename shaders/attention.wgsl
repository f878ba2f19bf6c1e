// Grouped decode attention, one split of the context (flash-decoding style).
//
// Workgroup (g, s, t): KV head g, positions [s * split_len, min((s + 1) * split_len, n_ctx))
// with n_ctx = pos0 + t + 1 (causal), for ALL group = H/G query heads that share KV head g.
// Keys and values are staged tile by tile in workgroup memory and used by every query head
// of the group there, so each K/V element is read from memory once per token, not H/G times.
// The softmax is online (running max m and sum l per query head); the splits are merged by
// attention_merge.wgsl.
//
// q: (T, q_stride) f32, H heads of head_dim per row (rotated).
// k_cache, v_cache: (G, capacity) records of head_dim elements (kv_format.wgsl).
// partial: (T, H, n_splits, 2 + head_dim) f32: (m, l, unnormalized output).
// Dispatch: (G, n_splits, T). Limits checked on the host: group * tile <= 1024,
// tile * head_dim <= 2048, group <= WG, group * head_dim <= WG * MAX_ACC.
//
// Work split inside the workgroup (WG invocations), so that few heads or a small
// head_dim still keep every invocation busy:
//  - scores: one invocation per (query head r, position j) of the tile;
//  - softmax: lanes_h (<= 8) invocations per query head, partial max and sum combined
//    serially (few workgroup barriers: they are costly on CPU emulation);
//  - values: lanes_p invocations per output element (r, d), each over a slice of the
//    tile's positions, summed once at the end; with lanes_p = 1 an invocation keeps up
//    to MAX_ACC output elements.

const WG: u32 = 128u;      // engine.rs ATT_WG
const MAX_ACC: u32 = 32u;  // engine.rs ATT_MAX_PAIRS / ATT_WG
const NEG_BIG: f32 = -1.0e30;

struct Params {
    group: u32,      // H / G query heads per KV head
    head_dim: u32,
    capacity: u32,
    pos0: u32,
    q_stride: u32,
    split_len: u32,
    n_splits: u32,
    tile: u32,       // positions per tile
    n_heads: u32,
    scale: f32,      // 1 / sqrt(head_dim)
    lanes_h: u32,    // lanes_h * group <= WG
    lanes_p: u32,    // power of two, lanes_p * group * head_dim <= WG (or 1)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k_cache: array<u32>;
@group(0) @binding(3) var<storage, read> v_cache: array<u32>;
@group(0) @binding(4) var<storage, read_write> partial: array<f32>;

var<workgroup> kv_tile: array<f32, 2048>;   // (tile, head_dim): keys, then values
var<workgroup> scores: array<f32, 1024>;    // (group, tile): scores, then exp(score - m)
var<workgroup> m_run: array<f32, WG>;        // (group) running max
var<workgroup> l_run: array<f32, WG>;        // (group) running sum of exp
var<workgroup> alpha: array<f32, WG>;        // (group) rescale of the old sums this tile
var<workgroup> red_max: array<f32, WG>;      // per-lane partial max
var<workgroup> red_sum: array<f32, WG>;      // per-lane partial sums

// Element e of the key or value cache (kv_format.wgsl).
fn load_kv(is_key: bool, e: u32) -> f32 {
    let at = kv_word(e, p.head_dim);
    let scale_at = kv_scale_word(e, p.head_dim);
    if is_key {
        return kv_decode(k_cache[at], k_cache[scale_at], e);
    }
    return kv_decode(v_cache[at], v_cache[scale_at], e);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let g = wid.x;
    let split = wid.y;
    let t = wid.z;
    let hd = p.head_dim;
    let group = p.group;
    let n_pairs = group * hd;
    let n_ctx = p.pos0 + t + 1u;
    let start = split * p.split_len;
    let end = min(start + p.split_len, n_ctx);
    let head_base = (g * p.capacity) * hd;    // this KV head's block in the cache
    let q_base = t * p.q_stride + g * group * hd;
    // Softmax lanes: query head h_r, lane h_lane of lanes_h.
    let h_r = lid / p.lanes_h;
    let h_lane = lid % p.lanes_h;
    // Value lanes: output elements pair0 + a * pairs_per_round, positions slice, slice + lanes_p, ...
    let slice = lid % p.lanes_p;
    let pair0 = lid / p.lanes_p;
    let pairs_per_round = WG / p.lanes_p;

    var acc: array<f32, MAX_ACC>;
    for (var a = 0u; a < MAX_ACC; a++) {
        acc[a] = 0.0;
    }
    if lid < group {
        m_run[lid] = NEG_BIG;
        l_run[lid] = 0.0;
    }
    workgroupBarrier();

    for (var tile0 = start; tile0 < end; tile0 += p.tile) {
        let n = min(p.tile, end - tile0);
        // Keys of the tile: n * hd contiguous elements.
        for (var e = lid; e < n * hd; e += WG) {
            kv_tile[e] = load_kv(true, head_base + tile0 * hd + e);
        }
        workgroupBarrier();
        // scores[r, j] = q_r . k_j * scale for every query head r of the group.
        for (var e = lid; e < group * n; e += WG) {
            let r = e / n;
            let j = e % n;
            var s = 0.0;
            for (var d = 0u; d < hd; d++) {
                s += q[q_base + r * hd + d] * kv_tile[j * hd + d];
            }
            scores[r * p.tile + j] = s * p.scale;
        }
        workgroupBarrier();

        // Online softmax: the tile's max per query head ...
        var m_local = NEG_BIG;
        if h_r < group {
            for (var j = h_lane; j < n; j += p.lanes_h) {
                m_local = max(m_local, scores[h_r * p.tile + j]);
            }
        }
        red_max[lid] = m_local;
        workgroupBarrier();
        var m_new = NEG_BIG;
        if h_r < group {
            var m_tile = NEG_BIG;
            for (var k = 0u; k < p.lanes_h; k++) {
                m_tile = max(m_tile, red_max[h_r * p.lanes_h + k]);
            }
            m_new = max(m_run[h_r], m_tile);
        }
        // ... then exp(score - m_new) and their sum.
        var l_local = 0.0;
        if h_r < group {
            for (var j = h_lane; j < n; j += p.lanes_h) {
                let e = exp(scores[h_r * p.tile + j] - m_new);
                scores[h_r * p.tile + j] = e;
                l_local += e;
            }
        }
        red_sum[lid] = l_local;
        workgroupBarrier();
        if h_r < group && h_lane == 0u {
            var l_tile = 0.0;
            for (var k = 0u; k < p.lanes_h; k++) {
                l_tile += red_sum[h_r * p.lanes_h + k];
            }
            let a = exp(m_run[h_r] - m_new);
            alpha[h_r] = a;
            l_run[h_r] = l_run[h_r] * a + l_tile;
            m_run[h_r] = m_new;
        }
        // Values of the tile (the keys are no longer needed).
        for (var e = lid; e < n * hd; e += WG) {
            kv_tile[e] = load_kv(false, head_base + tile0 * hd + e);
        }
        workgroupBarrier();
        // out[r, d] = out[r, d] * alpha[r] + sum_j p[r, j] * v[j, d].
        for (var a = 0u; a < MAX_ACC; a++) {
            let pair = pair0 + a * pairs_per_round;
            if pair < n_pairs {
                let r = pair / hd;
                let d = pair % hd;
                var o = acc[a] * alpha[r];
                for (var j = slice; j < n; j += p.lanes_p) {
                    o += scores[r * p.tile + j] * kv_tile[j * hd + d];
                }
                acc[a] = o;
            }
        }
        workgroupBarrier();
    }

    // Sum the position slices of each output element (lanes_p > 1: one element each).
    if p.lanes_p > 1u {
        red_sum[lid] = acc[0];
        workgroupBarrier();
        for (var s = p.lanes_p / 2u; s > 0u; s >>= 1u) {
            if slice < s {
                red_sum[lid] += red_sum[lid + s];
            }
            workgroupBarrier();
        }
        acc[0] = red_sum[lid];
    }

    // partial[t, h, split] = (m, l, out[hd]) for h = g * group + r.
    let stride = 2u + hd;
    if slice == 0u {
        for (var a = 0u; a < MAX_ACC; a++) {
            let pair = pair0 + a * pairs_per_round;
            if pair < n_pairs {
                let r = pair / hd;
                let d = pair % hd;
                let h = g * group + r;
                partial[((t * p.n_heads + h) * p.n_splits + split) * stride + 2u + d] = acc[a];
            }
        }
    }
    if lid < group {
        let h = g * group + lid;
        let base = ((t * p.n_heads + h) * p.n_splits + split) * stride;
        partial[base] = m_run[lid];
        partial[base + 1u] = l_run[lid];
    }
}
