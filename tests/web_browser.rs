//! The browser API (src/wasm/) on WebGPU, in headless Chromium with wasm-bindgen-test:
//! the GPU engine's logits match the CPU SIMD engine's on the same model, generation
//! streams on the GPU, and switching G keeps both in step. Run by tests/run.sh:
//!
//!   CHROMEDRIVER=/usr/bin/chromedriver WASM_BINDGEN_TEST_WEBDRIVER_JSON=tests/web/webdriver.json \
//!   CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
//!   RUSTFLAGS="-C target-feature=+simd128" cargo test --profile web --target wasm32-unknown-unknown --test web_browser
#![cfg(target_arch = "wasm32")]

mod common;

use gqa::tensor::KvDType;
use gqa::wasm::{webgpu_status, WebSession};
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn ok<T>(r: Result<T, JsError>) -> T {
    r.map_err(JsValue::from).unwrap()
}

fn field(value: &JsValue, name: &str) -> JsValue {
    js_sys::Reflect::get(value, &name.into()).unwrap()
}

/// Chromium's WebGPU runs on Vulkan here: ignored where build.rs finds no Vulkan
/// driver; where there is one, and always under CI, a browser without WebGPU fails it.
#[wasm_bindgen_test]
#[cfg_attr(not(has_vulkan), ignore = "needs WebGPU in the browser (a Vulkan driver: mesa-vulkan-drivers)")]
async fn webgpu_logits_match_the_cpu_engine_for_every_g() {
    let status = ok(webgpu_status().await);
    assert!(
        field(&status, "available") == JsValue::TRUE,
        "this test needs WebGPU in the browser: {:?}",
        field(&status, "reason")
    );
    // The scaled test model (attention far from uniform, logits spread out) and 300
    // positions, so that attention runs in two 256-position splits and their merge.
    let model = common::test_model(&common::small_config(8), 2);
    let weights = gqa::hf::to_safetensors(&model, gqa::tensor::DType::F32).unwrap();
    // An f32 KV cache on both engines (the GPU's default is f16, tested below).
    let mut session = ok(WebSession::from_hf(&model.config.to_json(), &weights, None, Some(400), Some("f32".into())));
    let tokens: Vec<u32> = (0..300).map(|i| (i * 7 + 1) % 97).collect();
    for g in [8, 4, 1] {
        ok(session.set_groups(g, "mean", 0));
        ok(session.use_cpu());
        let cpu = ok(session.logits(tokens.clone()).await);
        let name = ok(session.use_gpu().await);
        assert!(name.starts_with("gpu"), "{name}");
        let gpu = ok(session.logits(tokens.clone()).await);
        let diff = cpu.iter().zip(&gpu).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(diff <= 1e-4, "G = {g}: max |gpu - cpu| = {diff}");
    }

    let streamed = std::rc::Rc::new(std::cell::Cell::new(0));
    let counter = streamed.clone();
    let on_token = Closure::<dyn FnMut(String) -> bool>::new(move |_text: String| {
        counter.set(counter.get() + 1);
        true
    });
    let params = js_sys::JSON::parse(r#"{"maxTokens": 32, "temperature": 0}"#).unwrap();
    let stats = ok(session.generate("".into(), params, on_token.as_ref().unchecked_ref::<js_sys::Function>().clone()).await);
    assert!(field(&stats, "backend").as_string().unwrap().starts_with("gpu"));
    let generated = field(&stats, "generated_tokens").as_f64().unwrap();
    assert!(generated >= 1.0 && streamed.get() as f64 >= generated, "generated {generated}, streamed {}", streamed.get());
    console_log!("WebGPU: {} tokens streamed on {:?}", streamed.get(), field(&stats, "backend"));

    // Sampled generation: the GPU samples (sample.wgsl) from the session's seeded draws,
    // so the CPU engine streams the same ids for the same seed.
    let mut texts = Vec::new();
    for gpu in [true, false] {
        if gpu { ok(session.use_gpu().await); } else { ok(session.use_cpu()); }
        let text = std::rc::Rc::new(std::cell::RefCell::new(String::new()));
        let sink = text.clone();
        let on_token = Closure::<dyn FnMut(String) -> bool>::new(move |t: String| {
            sink.borrow_mut().push_str(&t);
            true
        });
        let params = js_sys::JSON::parse(r#"{"maxTokens": 40, "temperature": 0.8, "topP": 0.9, "seed": 5}"#).unwrap();
        ok(session.generate("".into(), params, on_token.as_ref().unchecked_ref::<js_sys::Function>().clone()).await);
        texts.push(text.borrow().clone());
    }
    assert_eq!(texts[0], texts[1], "sampled text on WebGPU vs the CPU, same seed");
}

/// The GPU sampler against the CPU's on fixed logits, on WebGPU (see the native test).
#[wasm_bindgen_test]
#[cfg_attr(not(has_vulkan), ignore = "needs WebGPU in the browser (a Vulkan driver: mesa-vulkan-drivers)")]
async fn webgpu_sampling_matches_the_cpu_sampler() {
    common::gpu_sampling_matches_cpu(8).await;
}

/// Long contexts past 4096 positions on WebGPU, every G, with the split the engine
/// chooses for this adapter (see the native test), for the KV precisions WebGPU offers
/// beyond the native test's: f16 (its default) and int8. (f32 runs the same kernels as
/// f16 but for the word decoding, which the native test covers; SwiftShader is slow.)
#[wasm_bindgen_test]
#[cfg_attr(not(has_vulkan), ignore = "needs WebGPU in the browser (a Vulkan driver: mesa-vulkan-drivers)")]
async fn webgpu_long_context_matches_the_cpu_engine() {
    common::long_context_matches_cpu(&[None], &[KvDType::F16, KvDType::I8]).await;
}

/// The KV cache's precision by default: f16 on WebGPU, f32 on the CPU.
#[wasm_bindgen_test]
#[cfg_attr(not(has_vulkan), ignore = "needs WebGPU in the browser (a Vulkan driver: mesa-vulkan-drivers)")]
async fn webgpu_kv_cache_defaults_to_f16() {
    let model = common::test_model(&common::small_config(2), 2);
    let weights = gqa::hf::to_safetensors(&model, gqa::tensor::DType::F32).unwrap();
    let mut session = ok(WebSession::from_hf(&model.config.to_json(), &weights, None, Some(64), None));
    assert_eq!(field(&ok(session.info()), "kvDtype").as_string().unwrap(), "f32");
    ok(session.use_gpu().await);
    assert_eq!(field(&ok(session.info()), "kvDtype").as_string().unwrap(), "f16");
    ok(session.use_cpu());
    assert_eq!(field(&ok(session.info()), "kvDtype").as_string().unwrap(), "f32");
}
