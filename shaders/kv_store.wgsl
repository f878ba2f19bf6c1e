// Append the new tokens' keys and values to one layer's KV cache.
//
// k, v: (T, stride) f32, n_kv_heads heads of head_dim per row (keys already rotated).
// k_cache, v_cache: (n_kv_heads, capacity, head_dim): f32 one per u32, or f16 two per u32.
// One invocation per (t, kv head, pair of elements). Dispatch: (ceil(T * G * hd/2 / 64), 1, 1).

override KV_F16: bool = false;

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
    let src = t * p.stride + head * p.head_dim + 2u * j;
    let dst = (head * p.capacity + p.pos0 + t) * p.head_dim + 2u * j;
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
