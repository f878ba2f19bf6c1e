// Append the new tokens' keys and values to one layer's KV cache.
//
// k, v: (T, stride) f32, n_kv_heads heads of head_dim per row (keys already rotated).
// k_cache, v_cache: (n_kv_heads, capacity) records of head_dim elements (kv_format.wgsl).
// One invocation per (t, kv head, pair of elements); for int8, the even pairs' invocations
// each write a word of four elements (quantized as kv_cache.rs's quantize_i8: scale =
// max |x| / 127, q = round(x / scale), ties to even) and pair 0's also the scale.
// Dispatch: (ceil(T * G * hd/2 / 64), 1, 1).

struct Params {
    n_tokens: u32,
    n_kv_heads: u32,
    head_dim: u32,
    stride: u32,
    pos0: u32,
    capacity: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> k_cache: array<u32>;
@group(0) @binding(4) var<storage, read_write> v_cache: array<u32>;

fn source(is_key: bool, i: u32) -> f32 {
    return select(v[i], k[i], is_key);
}

// The int8 record of the head vector at src: word 1 + quad, and (quad 0) the scale word.
fn store_i8(is_key: bool, src: u32, record: u32, quad: u32) {
    var m = 0.0;
    for (var d = 0u; d < p.head_dim; d++) {
        m = max(m, abs(source(is_key, src + d)));
    }
    let scale = m / 127.0;
    var word = 0u;
    for (var b = 0u; b < 4u; b++) {
        var q = 0.0;
        if scale > 0.0 {
            q = clamp(round(source(is_key, src + 4u * quad + b) / scale), -127.0, 127.0);
        }
        word |= (bitcast<u32>(i32(q)) & 0xffu) << (8u * b);
    }
    if is_key {
        k_cache[record + 1u + quad] = word;
        if quad == 0u {
            k_cache[record] = bitcast<u32>(scale);
        }
    } else {
        v_cache[record + 1u + quad] = word;
        if quad == 0u {
            v_cache[record] = bitcast<u32>(scale);
        }
    }
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let half = p.head_dim / 2u;
    let id = gid.x;
    if id >= p.n_tokens * p.n_kv_heads * half {
        return;
    }
    let j = id % half;
    let head = (id / half) % p.n_kv_heads;
    let t = id / (half * p.n_kv_heads);
    let start = t * p.stride + head * p.head_dim; // this head's vector in k and v
    let src = start + 2u * j;
    let record = head * p.capacity + p.pos0 + t;
    if KV_I8 {
        if (j & 1u) == 0u {
            let at = record * kv_record_words(p.head_dim);
            store_i8(true, start, at, j / 2u);
            store_i8(false, start, at, j / 2u);
        }
        return;
    }
    let dst = record * p.head_dim + 2u * j;
    if KV_F16 {
        k_cache[dst / 2u] = pack2x16float(vec2<f32>(k[src], k[src + 1u]));
        v_cache[dst / 2u] = pack2x16float(vec2<f32>(v[src], v[src + 1u]));
    } else {
        k_cache[dst] = bitcast<u32>(k[src]);
        k_cache[dst + 1u] = bitcast<u32>(k[src + 1u]);
        v_cache[dst] = bitcast<u32>(v[src]);
        v_cache[dst + 1u] = bitcast<u32>(v[src + 1u]);
    }
}
