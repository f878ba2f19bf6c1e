//! A GPU error that no call caught (here: an invalid buffer) comes back as an
//! error from the next read-back, instead of wgpu's default panic (which would
//! kill the page's wasm module).

use gqa::gpu::GpuContext;

#[test]
#[cfg_attr(not(has_vulkan), ignore = "needs a Vulkan driver (mesa-vulkan-drivers: lavapipe)")]
fn uncaptured_gpu_errors_become_errors() {
    let ctx = pollster::block_on(GpuContext::new())
        .unwrap_or_else(|e| panic!("this test needs a GPU adapter (a Vulkan driver; mesa-vulkan-drivers has lavapipe): {e}"));
    let buffer = |usage| {
        ctx.device.create_buffer(&wgpu::BufferDescriptor { label: None, size: 16, usage, mapped_at_creation: false })
    };
    let good = buffer(wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST);
    assert!(pollster::block_on(ctx.read(&good, 16)).is_ok());
    // MAP_READ may only be combined with COPY_DST: a validation error.
    let _bad = buffer(wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::STORAGE);
    let err = pollster::block_on(ctx.read(&good, 16)).unwrap_err().to_string();
    assert!(err.contains("the GPU reported an error"), "{err}");
    // Reported once; the device keeps working.
    assert!(pollster::block_on(ctx.read(&good, 16)).is_ok());
}
