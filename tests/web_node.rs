//! The browser API (src/wasm/) under Node, with wasm-bindgen-test: the CPU SIMD engine
//! gives the native engine's logits (within 1e-5) on the same model, and Node's missing
//! WebGPU is reported as a reason, not a panic. Run by tests/run.sh after
//! tests/web_reference.rs has written target/web-reference/:
//!
//!   CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
//!   RUSTFLAGS="-C target-feature=+simd128" cargo test --profile web --target wasm32-unknown-unknown --test web_node
#![cfg(target_arch = "wasm32")]

use gqa::wasm::{webgpu_status, WebSession};
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::*;

const REFERENCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/target/web-reference");
const FIXTURE: &str = concat!(env!("GQA_SHARED_DIR"), "/fixtures/llama2c");

/// A file's bytes through Node's fs, or None when it does not exist.
fn read(path: &str) -> Option<Vec<u8>> {
    let read = js_sys::Function::new_with_args(
        "p",
        "const fs = process.getBuiltinModule('fs'); return fs.existsSync(p) ? fs.readFileSync(p) : null",
    );
    let value = read.call1(&JsValue::NULL, &JsValue::from_str(path)).unwrap();
    (!value.is_null()).then(|| js_sys::Uint8Array::new(&value).to_vec())
}

fn ok<T>(r: Result<T, JsError>) -> T {
    r.map_err(JsValue::from).unwrap()
}

fn message(e: JsError) -> String {
    js_sys::Error::from(JsValue::from(e)).message().into()
}

async fn assert_same_logits(session: &mut WebSession, cases: &serde_json::Value, expected: &serde_json::Value, what: &str) {
    for (tokens, want) in cases.as_array().unwrap().iter().zip(expected.as_array().unwrap()) {
        let tokens: Vec<u32> = serde_json::from_value(tokens.clone()).unwrap();
        let want: Vec<f32> = serde_json::from_value(want.clone()).unwrap();
        let got = ok(session.logits(tokens.clone()).await);
        assert_eq!(got.len(), want.len());
        let diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(diff <= 1e-5, "{what}, tokens {tokens:?}: max |wasm - native| = {diff}");
    }
}

fn reference() -> serde_json::Value {
    let bytes = read(&format!("{REFERENCE}/reference.json"))
        .expect("target/web-reference/reference.json is missing: run `cargo test --test web_reference` first");
    serde_json::from_slice(&bytes).unwrap()
}

#[wasm_bindgen_test]
async fn cpu_simd_logits_equal_the_native_engine() {
    let reference = reference();
    let config = String::from_utf8(read(&format!("{REFERENCE}/config.json")).unwrap()).unwrap();
    let weights = read(&format!("{REFERENCE}/model.safetensors")).unwrap();
    let mut session = ok(WebSession::from_hf(&config, &weights, None, None, None));
    assert_same_logits(&mut session, &reference["cases"], &reference["random"], "random-weight model").await;
    // The int8 KV cache: the same keys and values rounded by the same rule (a key or
    // value lying within float rounding of a boundary between two codes would differ
    // by one step; none does for these cases).
    let mut session = ok(WebSession::from_hf(&config, &weights, None, None, Some("int8".into())));
    assert_same_logits(&mut session, &reference["cases"], &reference["random_int8_kv"], "random-weight model, int8 KV").await;
}

#[wasm_bindgen_test]
#[cfg_attr(not(has_shared), ignore = "needs ../shared (the shared fixtures)")]
async fn cpu_simd_logits_equal_the_native_engine_for_stories260k() {
    let reference = reference();
    let bin = read(&format!("{FIXTURE}/stories260K.bin"))
        .unwrap_or_else(|| panic!("this test needs the shared fixtures, but {FIXTURE}/stories260K.bin is missing"));
    let expected = reference.get("stories260K").expect("reference.json has no stories260K logits");
    let mut session = ok(WebSession::from_llama2c(&bin, read(&format!("{FIXTURE}/tok512.bin")), Some(64), None));
    assert_same_logits(&mut session, &reference["cases"], expected, "stories260K").await;
}

/// SmolLM2's GGUF (Q4_1 and Q8_0 blocks read in place by the simd128 kernels): the
/// native engine's logits, within 1e-4 of the largest |logit|, the bar of the f64
/// reference test (tests/smollm2.rs; simd128 has no fused multiply-add, so its roundings
/// differ from AVX2's, and 30 layers carry them; each engine is within about 4e-6 of f64).
#[wasm_bindgen_test]
#[cfg_attr(not(has_shared), ignore = "needs ../shared (the shared fixtures)")]
async fn cpu_simd_logits_equal_the_native_engine_for_smollm2() {
    let reference = reference();
    let path = concat!(env!("GQA_SHARED_DIR"), "/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    let bytes = read(path).unwrap_or_else(|| panic!("this test needs the shared fixtures, but {path} is missing"));
    let expected = reference.get("smollm2").expect("reference.json has no smollm2 logits");
    let mut session = ok(WebSession::from_gguf(&bytes, Some(64), None));
    drop(bytes);
    for (tokens, want) in expected["cases"].as_array().unwrap().iter().zip(expected["logits"].as_array().unwrap()) {
        let tokens: Vec<u32> = serde_json::from_value(tokens.clone()).unwrap();
        let want: Vec<f32> = serde_json::from_value(want.clone()).unwrap();
        let got = ok(session.logits(tokens.clone()).await);
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(diff <= 1e-4 * scale, "SmolLM2, tokens {tokens:?}: max |wasm - native| = {diff} (largest |logit| {scale})");
    }
}

#[wasm_bindgen_test]
async fn without_webgpu_the_cpu_is_used_and_the_reason_given() {
    let status = ok(webgpu_status().await);
    let available = js_sys::Reflect::get(&status, &"available".into()).unwrap();
    let reason = js_sys::Reflect::get(&status, &"reason".into()).unwrap().as_string().unwrap();
    assert_eq!(available, JsValue::FALSE);
    assert!(reason.contains("no WebGPU"), "{reason}");

    let mut session = ok(WebSession::from_preset("tiny", 1, false, Some(64), None));
    let err = message(session.use_gpu().await.unwrap_err());
    assert!(err.contains("no WebGPU"), "{err}");
    assert!(!session.uses_gpu());
    let stats = ok(session.generate("".into(), JsValue::UNDEFINED, js_sys::Function::new_no_args("return true")).await);
    let backend = js_sys::Reflect::get(&stats, &"backend".into()).unwrap().as_string().unwrap();
    assert!(backend.starts_with("cpu"), "{backend}");
}

#[wasm_bindgen_test]
fn bad_inputs_are_js_errors_with_the_message() {
    let err = message(WebSession::from_llama2c(&[1, 2, 3], None, None, None).err().unwrap());
    assert!(err.contains("llama2.c checkpoint is invalid"), "{err}");
    let err = message(WebSession::from_hf("{", &[], None, None, None).err().unwrap());
    assert!(err.contains("config.json"), "{err}");
    let err = message(WebSession::from_gguf(b"<!DOCTYPE html><html></html>", None, None).err().unwrap());
    assert!(err.contains("not a GGUF file"), "{err}");
    let err = message(WebSession::from_gguf(b"GGUF\x03\0\0\0", None, None).err().unwrap());
    assert!(err.contains("the header"), "{err}");
    let err = message(WebSession::from_preset("huge", 1, false, None, None).err().unwrap());
    assert!(err.contains("unknown preset"), "{err}");
    let mut session = ok(WebSession::from_preset("tiny", 1, false, Some(64), None));
    let err = message(session.set_groups(3, "mean", 0).unwrap_err());
    assert!(err.contains("G must divide"), "{err}");
    let err = message(session.set_groups(2, "average", 0).unwrap_err());
    assert!(err.contains("unknown conversion method"), "{err}");
    let bad = js_sys::JSON::parse(r#"{"temperature": -1}"#).unwrap();
    let err = message(session.start("".into(), bad).unwrap_err());
    assert!(err.contains("temperature"), "{err}");
    let bad = js_sys::JSON::parse(r#"{"maxTokens": "many"}"#).unwrap();
    let err = message(session.start("".into(), bad).unwrap_err());
    assert!(err.contains("bad generation settings"), "{err}");
}

#[wasm_bindgen_test]
async fn step_wise_generation_streams_stops_and_measures_quality() {
    let mut session = ok(WebSession::from_preset("tiny", 1, false, Some(64), None));
    let params = || js_sys::JSON::parse(r#"{"maxTokens": 40, "temperature": 0.8, "seed": 3}"#).unwrap();
    ok(session.start("".into(), params()));
    let mut ids = Vec::new();
    for _ in 0..5 {
        let piece = ok(session.next_token());
        assert_eq!(js_sys::Reflect::get(&piece, &"done".into()).unwrap(), JsValue::FALSE);
        ids.push(js_sys::Reflect::get(&piece, &"id".into()).unwrap().as_f64().unwrap() as u32);
    }
    session.stop();
    let piece = ok(session.next_token());
    assert_eq!(js_sys::Reflect::get(&piece, &"done".into()).unwrap(), JsValue::TRUE);
    let stats = ok(session.stats());
    assert_eq!(js_sys::Reflect::get(&stats, &"stop_reason".into()).unwrap(), "stopped");

    // The unconverted model agrees with itself; a conversion changes the distributions.
    let same = ok(session.quality_vs_base(ids.clone()));
    assert_eq!(js_sys::Reflect::get(&same, &"top1_agreement".into()).unwrap().as_f64(), Some(1.0));
    ok(session.set_groups(1, "mean", 0));
    let mqa = ok(session.quality_vs_base(ids));
    let kl = js_sys::Reflect::get(&mqa, &"kl_vs_base".into()).unwrap().as_f64().unwrap();
    assert!(kl > 0.0, "KL of MQA vs MHA: {kl}");
}

fn field(value: &JsValue, name: &str) -> JsValue {
    js_sys::Reflect::get(value, &name.into()).unwrap()
}

/// The probes that reuse the KV cache (logits, decodeSpeed, qualityVsBase) end a
/// running generation: the next `nextToken` says done, never continuing on the
/// probe's keys.
#[wasm_bindgen_test]
async fn probes_end_a_running_generation() {
    for probe in ["logits", "decodeSpeed", "qualityVsBase"] {
        let mut session = ok(WebSession::from_preset("tiny", 1, false, Some(64), None));
        ok(session.start("".into(), js_sys::JSON::parse(r#"{"maxTokens": 40}"#).unwrap()));
        assert_eq!(field(&ok(session.next_token()), "done"), JsValue::FALSE);
        match probe {
            "logits" => drop(ok(session.logits(vec![1, 2]).await)),
            "decodeSpeed" => drop(ok(session.decode_speed(32, 4).await)),
            _ => drop(ok(session.quality_vs_base(vec![1, 2, 3]))),
        }
        assert_eq!(field(&ok(session.next_token()), "done"), JsValue::TRUE, "{probe}");
        assert_eq!(field(&ok(session.stats()), "stop_reason"), "stopped", "{probe}");
    }
}

/// Sizes that come from the caller are checked, never a panic (a `RuntimeError`):
/// a KV cache of one position, the largest contexts and step counts, and a KV cache
/// whose size overflows 32 bits and passes what the tab holds.
#[wasm_bindgen_test]
async fn sizes_from_the_caller_are_errors_not_panics() {
    let mut session = ok(WebSession::from_preset("tiny", 1, false, Some(1), None));
    let err = message(session.quality_vs_base(vec![1, 2]).unwrap_err());
    assert!(err.contains("at least 2 positions"), "{err}");
    let mut session = ok(WebSession::from_preset("tiny", 1, false, Some(64), None));
    for (context, steps) in [(usize::MAX, 8), (32, usize::MAX), (usize::MAX, usize::MAX)] {
        let err = message(session.decode_speed(context, steps).await.unwrap_err());
        assert!(err.contains("KV capacity"), "{err}");
    }

    // 2 layers x 8 KV heads x head_dim 64 x 2^20 positions x 2 x 4 bytes = 8 GiB:
    // past what wasm32 addresses, and 0 modulo 2^32 on wasm32. The cache is fitted to
    // the tab instead (kv_fit: f16, then half the positions until twice MHA's cache fits
    // in 4 GiB less what is allocated and 256 MiB kept), and says why.
    let config = gqa::Config::new(512, 32, 2, 8, 8, 16, 1 << 20);
    let model = gqa::Model::random(&config, 1, gqa::tensor::DType::F16).unwrap();
    let weights = gqa::hf::to_safetensors(&model, gqa::tensor::DType::F16).unwrap();
    let mut session = ok(WebSession::from_hf(&config.to_json(), &weights, None, Some(1 << 20), None));
    let info = ok(session.info());
    let why = field(&info, "kvWhy").as_string().unwrap_or_default();
    // f16 MHA: 2 x 2 layers x 8 heads x 64 x 2 bytes = 4 KiB a position, twice: 2^18 positions
    // take 2 GiB (fits), 2^19 take 4 GiB (does not).
    assert_eq!(field(&info, "capacity").as_f64(), Some((1 << 18) as f64), "{why}");
    assert_eq!(field(&info, "kvDtype").as_string().as_deref(), Some("f16"));
    assert!(why.contains("an f32 cache of 1048576 positions takes 8192 MiB at MHA (G = 8)") && why.contains("262144 positions in f16 fit"), "{why}");
    drop(session);
    // Without a capacity the cache holds min(context, 4096) positions.
    let mut session = ok(WebSession::from_hf(&config.to_json(), &weights, None, None, None));
    assert_eq!(field(&ok(session.info()), "capacity").as_f64(), Some(4096.0));
}
