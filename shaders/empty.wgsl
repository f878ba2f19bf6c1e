// A kernel that does nothing, on one read-write buffer: a forward pass's dispatches
// replaced by this one (one workgroup each) cost what dispatching and the barriers
// between them cost, the fixed part of a decode step (`gqa bench --backend gpu`).

@group(0) @binding(0) var<uniform> p: vec4<u32>;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(64)
fn main() {}
