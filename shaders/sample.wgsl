// Sampling on the GPU (temperature, top-k, top-p) from one row of logits, so that a
// sampled decode step reads back 8 bytes (the token and a status), as a greedy one
// reads back its argmax. The rule is the CPU sampler's (sampler.rs, `sample_with`):
//   p_i = exp((l_i - max) * inv_temp), most likely first (ties: lower id first);
//   keep the top_k (when set), then the shortest prefix whose share of the mass (of
//   what top-k kept, else of the whole vocabulary) reaches top_p;
//   r = u * (mass kept): the token where the running sum of p first passes r.
// Only the CAND most likely tokens are ranked: a radix select (4 passes of 8 bits over
// the bits of p, which order like p for p >= 0) finds the CAND-th largest p; the
// tokens above it, then those equal to it in id order, are gathered and sorted
// (bitonic) in workgroup memory; invocation 0 then walks them as the CPU does. When
// the rule reaches past them (top_k > CAND, a nucleus or a draw beyond their mass),
// result[1] = 1 and the engine samples the logits on the CPU with the same u.
// The GPU's exp and its summation order (a tree, where the CPU sums in id order) may
// round differently from the CPU's: the token can differ only when r falls within that
// rounding of a boundary between two tokens.
// One workgroup of 256 invocations. Dispatch: (1, 1, 1).

const WG: u32 = 256u;
const CAND: u32 = 1024u;
const NONE: u32 = 0xffffffffu;

struct Params {
    n: u32,          // vocabulary size
    offset: u32,     // first logit of the row
    inv_temp: f32,   // 1 / temperature (> 0)
    top_k: u32,      // 0: no limit
    top_p: f32,      // 1: no limit
    u: f32,          // the uniform draw in [0, 1)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> result: array<u32>;

var<workgroup> red: array<f32, WG>;          // reductions
var<workgroup> hist: array<atomic<u32>, 256>; // radix histogram
var<workgroup> counts: array<u32, WG>;       // per-invocation counts, then their prefix sums
var<workgroup> cand_p: array<f32, CAND>;     // candidates: p, then
var<workgroup> cand_id: array<u32, CAND>;    //             token id
var<workgroup> found: array<u32, 3>;          // radix prefix, tokens still wanted, gathered

fn prob(i: u32, m: f32) -> f32 {
    return exp((logits[p.offset + i] - m) * p.inv_temp);
}

fn reduce(lid: u32, v: f32, is_max: bool) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if lid < s {
            red[lid] = select(red[lid] + red[lid + s], max(red[lid], red[lid + s]), is_max);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

// Append the tokens whose key (bits of p) is above tau (`above`) or equal to it, in id
// order, to the candidates from slot `base`; returns base + how many there were (slots
// past CAND are not written). Invocation lid scans one contiguous chunk of ids.
fn gather(lid: u32, m: f32, tau: u32, above: bool, base: u32) -> u32 {
    let chunk = (p.n + WG - 1u) / WG;
    let first = min(lid * chunk, p.n);
    let last = min(first + chunk, p.n);
    var c = 0u;
    for (var i = first; i < last; i++) {
        let key = bitcast<u32>(prob(i, m));
        if (above && key > tau) || (!above && key == tau) {
            c++;
        }
    }
    counts[lid] = c;
    workgroupBarrier();
    if lid == 0u {
        var sum = base;
        for (var j = 0u; j < WG; j++) {
            let cj = counts[j];
            counts[j] = sum;
            sum += cj;
        }
        found[2] = sum;
    }
    workgroupBarrier();
    var slot = counts[lid];
    for (var i = first; i < last; i++) {
        let pi = prob(i, m);
        let key = bitcast<u32>(pi);
        if (above && key > tau) || (!above && key == tau) {
            if slot < CAND {
                cand_p[slot] = pi;
                cand_id[slot] = i;
            }
            slot++;
        }
    }
    let total = workgroupUniformLoad(&found[2]);
    return total;
}

// Whether candidate a comes before b: larger p first, then the lower id.
fn before(pa: f32, ia: u32, pb: f32, ib: u32) -> bool {
    return pa > pb || (pa == pb && ia < ib);
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32) {
    // The maximum logit and the whole mass at this temperature.
    var m_local = -3.4e38;
    for (var i = lid; i < p.n; i += WG) {
        m_local = max(m_local, logits[p.offset + i]);
    }
    let m = reduce(lid, m_local, true);
    var s_local = 0.0;
    for (var i = lid; i < p.n; i += WG) {
        s_local += prob(i, m);
    }
    let all = reduce(lid, s_local, false);

    // tau = the CAND-th largest key (0, i.e. every token, when the vocabulary is smaller).
    if lid == 0u {
        found[0] = 0u;
        found[1] = CAND;
    }
    workgroupBarrier();
    if p.n > CAND {
        var mask = 0u;
        for (var digit = 0u; digit < 4u; digit++) {
            let shift = 24u - 8u * digit;
            atomicStore(&hist[lid], 0u);
            workgroupBarrier();
            let prefix = found[0];
            for (var i = lid; i < p.n; i += WG) {
                let key = bitcast<u32>(prob(i, m));
                if (key & mask) == prefix {
                    atomicAdd(&hist[(key >> shift) & 255u], 1u);
                }
            }
            workgroupBarrier();
            if lid == 0u {
                // The bin, from the top, where the tokens wanted are reached.
                var want = found[1];
                var bin = 255u;
                loop {
                    let c = atomicLoad(&hist[bin]);
                    if c >= want || bin == 0u {
                        break;
                    }
                    want -= c;
                    bin--;
                }
                found[0] = prefix | (bin << shift);
                found[1] = want;
            }
            mask |= 255u << shift;
            workgroupBarrier();
        }
    }
    let tau = workgroupUniformLoad(&found[0]);

    // The candidates: above tau (fewer than CAND), then equal to it, lowest ids first.
    let n_above = gather(lid, m, tau, true, 0u);
    let n_total = gather(lid, m, tau, false, n_above);
    let n_cand = min(n_total, CAND);
    for (var i = n_cand + lid; i < CAND; i += WG) {
        cand_p[i] = -1.0;
        cand_id[i] = NONE;
    }
    workgroupBarrier();

    // Bitonic sort of the CAND slots, most likely first.
    for (var k = 2u; k <= CAND; k <<= 1u) {
        for (var j = k >> 1u; j > 0u; j >>= 1u) {
            for (var t = lid; t < CAND / 2u; t += WG) {
                let a = 2u * j * (t / j) + t % j;
                let b = a + j;
                // Blocks with (a & k) == 0 go most likely first, the others the reverse.
                let forward = (a & k) == 0u;
                let swap = select(
                    before(cand_p[a], cand_id[a], cand_p[b], cand_id[b]),
                    before(cand_p[b], cand_id[b], cand_p[a], cand_id[a]),
                    forward,
                );
                if swap {
                    let tp = cand_p[a];
                    let ti = cand_id[a];
                    cand_p[a] = cand_p[b];
                    cand_id[a] = cand_id[b];
                    cand_p[b] = tp;
                    cand_id[b] = ti;
                }
            }
            workgroupBarrier();
        }
    }

    // The CPU sampler's walk.
    if lid == 0u {
        var status = 0u;
        var token = NONE;
        var keep = p.n;
        if p.top_k > 0u {
            keep = min(keep, p.top_k);
        }
        // The mass top-p is relative to: what top-k kept, else the whole vocabulary.
        var total = all;
        if p.top_k > 0u {
            if keep > n_cand {
                status = 1u;
            } else {
                total = 0.0;
                for (var i = 0u; i < keep; i++) {
                    total += cand_p[i];
                }
            }
        }
        if status == 0u && p.top_p < 1.0 {
            var cumulative = 0.0;
            var reached = false;
            for (var i = 0u; i < min(keep, n_cand); i++) {
                cumulative += cand_p[i] / total;
                if cumulative >= p.top_p {
                    keep = i + 1u;
                    reached = true;
                    break;
                }
            }
            if !reached && keep > n_cand {
                status = 1u;
            }
        }
        if status == 0u {
            var mass = all;
            if keep <= n_cand {
                mass = 0.0;
                for (var i = 0u; i < keep; i++) {
                    mass += cand_p[i];
                }
            }
            var r = p.u * mass;
            for (var i = 0u; i < min(keep, n_cand); i++) {
                r -= cand_p[i];
                if r < 0.0 {
                    token = cand_id[i];
                    break;
                }
            }
            if token == NONE {
                if keep <= n_cand {
                    token = cand_id[keep - 1u];
                } else {
                    status = 1u;
                }
            }
        }
        result[0] = token;
        result[1] = status;
    }
}
