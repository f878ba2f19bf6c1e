// Rotary position embedding, in place, in Hugging Face's rotate_half layout: within each
// head of hd = 2 * half elements, element i pairs with i + half and rotates by the angle
// pos * theta^(-2i/hd), pos = pos0 + t.
//
// x: (T, stride) f32 holding n_heads heads per row (the queries, or the keys).
// table: (capacity, half) of (cos, sin), computed on the host exactly as the CPU engine.
// One invocation per (t, head, i < half). Dispatch: (ceil(T * n_heads * half / 64), 1, 1).

struct Params {
    n_tokens: u32,
    n_heads: u32,
    half: u32,     // head_dim / 2
    stride: u32,   // f32 per row of x
    pos0: u32,     // position of token 0
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> table: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let id = gid.x;
    if id >= p.n_tokens * p.n_heads * p.half {
        return;
    }
    let i = id % p.half;
    let head = (id / p.half) % p.n_heads;
    let t = id / (p.half * p.n_heads);
    let cs = table[(p.pos0 + t) * p.half + i];
    let a = t * p.stride + head * 2u * p.half + i;
    let b = a + p.half;
    let x1 = x[a];
    let x2 = x[b];
    x[a] = x1 * cs.x - x2 * cs.y;
    x[b] = x2 * cs.x + x1 * cs.y;
}
