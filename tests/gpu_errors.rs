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

/// A model change that fails on the GPU (here: G = H pushes one layer's KV cache past
/// the binding limit) leaves an engine without a model, which says so on every later
/// call instead of panicking; a model that fits makes it usable again.
#[test]
#[cfg_attr(not(has_vulkan), ignore = "needs a Vulkan driver (mesa-vulkan-drivers: lavapipe)")]
fn a_failed_model_change_leaves_an_engine_that_reports_it() {
    use gqa::backend::{Backend, Logits};
    use gqa::convert::{convert, Method};
    use gqa::gpu::{GpuEngine, GpuOptions};
    use gqa::model::Model;
    use gqa::tensor::DType;

    let ctx = pollster::block_on(GpuContext::new())
        .unwrap_or_else(|e| panic!("this test needs a GPU adapter (a Vulkan driver; mesa-vulkan-drivers has lavapipe): {e}"));
    // 8 heads of head_dim 64; one layer's MHA keys at 2^17 positions in f32: 256 MiB.
    let positions = 1 << 17;
    let mha = Model::random(&gqa::Config::new(512, 64, 1, 8, 8, 32, positions), 1, DType::F32).unwrap();
    let mha_kv = 8 * positions as u64 * 64 * 4;
    assert!(mha_kv > ctx.max_binding(), "the test needs a binding limit below {mha_kv} bytes");
    let mqa = convert(&mha, 1, Method::Mean, 0).unwrap();
    let f32_kv = GpuOptions { kv_dtype: gqa::tensor::KvDType::F32, ..GpuOptions::default() };
    let mut gpu = GpuEngine::with_context(ctx, mqa.clone(), positions, f32_kv).unwrap();
    gpu.forward(&[1, 2], Logits::Last).unwrap();

    let err = gpu.set_model(mha).unwrap_err().to_string();
    assert!(err.contains("max storage buffer binding"), "{err}");
    for err in [
        gpu.forward(&[1], Logits::Last).unwrap_err().to_string(),
        gpu.forward_argmax(&[1]).unwrap_err().to_string(),
        gpu.fill_synthetic(4, 1).unwrap_err().to_string(),
    ] {
        assert!(err.contains("no model is loaded"), "{err}");
    }
    gpu.set_model(mqa).unwrap();
    assert_eq!(gpu.forward(&[1, 2], Logits::Last).unwrap().len(), 32);
}

/// An int8 KV cache on the GPU packs four elements per word: a model whose head_dim is
/// not a multiple of 4 is refused with the reason, where the CPU engine takes it.
#[test]
#[cfg_attr(not(has_vulkan), ignore = "needs a Vulkan driver (mesa-vulkan-drivers: lavapipe)")]
fn int8_kv_cache_needs_head_dim_a_multiple_of_four_on_the_gpu() {
    use gqa::backend::{EngineOptions, Logits};
    use gqa::cpu::CpuEngine;
    use gqa::gpu::{GpuEngine, GpuOptions};
    use gqa::model::Model;
    use gqa::tensor::{DType, KvDType};

    let model = Model::random(&gqa::Config::new(24, 32, 1, 4, 2, 32, 16), 1, DType::F32).unwrap();
    assert_eq!(model.config.head_dim(), 6);
    let options = GpuOptions { kv_dtype: KvDType::I8, ..GpuOptions::default() };
    let err = pollster::block_on(GpuEngine::new_async(model.clone(), 16, options)).err().expect("refused").to_string();
    assert!(err.contains("head_dim 6 is not a multiple of 4"), "{err}");
    let mut cpu = CpuEngine::with_options(model, 16, EngineOptions { kv_dtype: Some(KvDType::I8), ..Default::default() }).unwrap();
    assert_eq!(cpu.forward(&[1, 2], Logits::Last).unwrap().len(), 32);
}
