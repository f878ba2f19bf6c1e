//! Reference logits from the native CPU engine, for the wasm tests (tests/web_node.rs):
//! writes target/web-reference/ with a random-weight model (config.json,
//! model.safetensors) and `reference.json`, the native logits for it (with an f32 and
//! an int8 KV cache), for the `15m` preset at seed 7 (large enough that the threaded
//! module splits its matrices and, over a 300-token case, its attention across threads)
//! and, when ../shared is present, for the stories260K fixture and SmolLM2's GGUF. tests/run.sh runs this
//! before the wasm tests (tests/web_node.rs, tests/web/threads.mjs), which load the
//! same models and compare their logits.

mod common;

use std::path::Path;

use gqa::cpu::CpuEngine;
use gqa::model::Model;
use gqa::backend::{EngineOptions, Logits};
use gqa::tensor::{DType, KvDType};

/// Token sequences whose last logits are compared (shared with tests/web_node.rs).
const CASES: &[&[u32]] = &[&[1], &[1, 5, 9, 200, 3], &[1, 300, 301, 302, 17, 17, 17, 40, 41, 42, 43, 44]];

/// The `15m` preset's seed, and its cases: the last one long enough that attention
/// is split across threads.
const PRESET_SEED: u64 = 7;
fn preset_cases() -> Vec<Vec<u32>> {
    vec![vec![1, 5, 9, 200, 3], (0..300).map(|i| (i * 37 + 1) % 4096).collect()]
}

/// SmolLM2's cases: `<|im_start|>user\nWhat is the capital of France?`, and its first
/// token alone.
const SMOLLM2_CASES: &[&[u32]] = &[&[1], &[1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47]];
fn smollm2_cases() -> Vec<Vec<u32>> {
    SMOLLM2_CASES.iter().map(|c| c.to_vec()).collect()
}

fn logits(model: &Model, kv_dtype: KvDType) -> Vec<Vec<f32>> {
    let cases: Vec<Vec<u32>> = CASES.iter().map(|c| c.to_vec()).collect();
    logits_of(model, kv_dtype, &cases)
}

fn logits_of(model: &Model, kv_dtype: KvDType, cases: &[Vec<u32>]) -> Vec<Vec<f32>> {
    let capacity = cases.iter().map(Vec::len).max().unwrap_or(1);
    let mut engine = CpuEngine::with_options(model.clone(), capacity.max(64), EngineOptions { kv_dtype: Some(kv_dtype), ..Default::default() }).unwrap();
    cases
        .iter()
        .map(|tokens| {
            engine.reset();
            engine.forward(tokens, Logits::Last).unwrap()
        })
        .collect()
}

#[test]
fn writes_reference_logits_for_the_wasm_tests() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/web-reference");
    std::fs::create_dir_all(&dir).unwrap();
    let mut config = gqa::presets::preset("tiny").unwrap();
    config.max_position_embeddings = 64;
    let model = Model::random(&config, 3, DType::F32).unwrap();
    gqa::hf::save_hf_dir(&model, &dir, DType::F32).unwrap();

    let mut reference = serde_json::json!({
        "cases": CASES,
        "random": logits(&model, KvDType::F32),
        "random_int8_kv": logits(&model, KvDType::I8),
    });
    let preset = Model::random(&gqa::presets::preset("15m").unwrap(), PRESET_SEED, DType::F32).unwrap();
    reference["preset_15m"] = serde_json::json!({
        "seed": PRESET_SEED,
        "cases": preset_cases(),
        "logits": logits_of(&preset, KvDType::F32, &preset_cases()),
    });
    // Without ../shared (outside CI) the wasm test of stories260K is ignored as well.
    if cfg!(has_shared) {
        let path = common::shared("fixtures/llama2c/stories260K.bin");
        let fixture = gqa::llama2c::load_llama2c(&std::fs::read(path).unwrap()).unwrap();
        reference["stories260K"] = serde_json::json!(logits(&fixture, KvDType::F32));
        // SmolLM2 from its GGUF (Q4_1 blocks, a Q8_0 embedding): the start of a chat.
        let path = common::shared("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
        let (smollm2, _) = gqa::loader::load_gguf(&std::fs::read(path).unwrap()).unwrap();
        reference["smollm2"] = serde_json::json!({ "cases": SMOLLM2_CASES, "logits": logits_of(&smollm2, KvDType::F32, &smollm2_cases()) });
    }
    std::fs::write(dir.join("reference.json"), reference.to_string()).unwrap();
}
