//! Bad input through the command line: a clear `error: ...` line, a failing
//! exit status, and never a panic.

mod common;

use std::path::PathBuf;
use std::process::Command;

use gqa::model::Model;
use gqa::tensor::DType;

fn gqa_fails(args: &[&str], expect: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_gqa")).args(args).output().expect("run gqa");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    assert!(stderr.contains(expect), "{args:?}: expected '{expect}' in: {stderr}");
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("gqa-cli-{}-{name}", std::process::id()))
}

#[test]
fn missing_model_file() {
    gqa_fails(&["generate", "--model", "/nonexistent/model.bin"], "cannot read /nonexistent/model.bin");
}

#[test]
fn corrupt_llama2c_file() {
    let p = temp("corrupt.bin");
    std::fs::write(&p, b"this is not a checkpoint at all, just text").unwrap();
    gqa_fails(&["generate", "--model", p.to_str().unwrap(), "--tokenizer", p.to_str().unwrap()], "llama2.c checkpoint is invalid");
    std::fs::remove_file(p).ok();
}

/// A damaged GGUF file (truncated, and not GGUF at all) on every command that loads one.
#[test]
#[cfg_attr(not(has_shared), ignore = "needs ../shared (the shared fixtures)")]
fn damaged_gguf_files() {
    let real = std::fs::read(common::shared("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap();
    let truncated = temp("truncated.gguf");
    std::fs::write(&truncated, &real[..real.len() - 1000]).unwrap();
    let html = temp("page.gguf");
    std::fs::write(&html, b"<!DOCTYPE html><html><body>Not found</body></html>").unwrap();
    let (t, h) = (truncated.to_str().unwrap(), html.to_str().unwrap());
    for command in ["generate", "chat", "bench", "eval", "convert"] {
        let mut args = vec![command, "--model", t];
        if command == "eval" {
            args.extend(["--text", t]);
        }
        if command == "convert" {
            args.extend(["--out", "/nonexistent/out.gguf"]);
        }
        gqa_fails(&args, "is the file truncated?");
        args[2] = h;
        gqa_fails(&args, "not a GGUF file");
    }
    std::fs::remove_file(truncated).ok();
    std::fs::remove_file(html).ok();
}

#[test]
fn corrupt_safetensors_in_hf_folder() {
    let dir = temp("hf-corrupt");
    let model = Model::random(&common::small_config(8), 1, DType::F32).unwrap();
    gqa::hf::save_hf_dir(&model, &dir, DType::F32).unwrap();
    let st = dir.join("model.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &bytes[..bytes.len() / 2]).unwrap();
    gqa_fails(&["bench", "--model", dir.to_str().unwrap()], "safetensors file is invalid");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
#[cfg_attr(not(has_shared), ignore = "needs ../shared (the shared fixtures)")]
fn tokenizer_larger_than_the_model_vocab() {
    let dir = common::shared("fixtures/llama2c");
    let hf = temp("hf-vocab");
    // A 97-token model with the fixture's 512-token tokenizer.
    let model = Model::random(&common::small_config(8), 1, DType::F32).unwrap();
    gqa::hf::save_hf_dir(&model, &hf, DType::F32).unwrap();
    gqa_fails(
        &["generate", "--model", hf.to_str().unwrap(), "--tokenizer", dir.join("tok512.bin").to_str().unwrap()],
        "tokenizer",
    );
    std::fs::remove_dir_all(hf).ok();
}

#[test]
fn missing_tokenizer() {
    let hf = temp("hf-notok");
    let model = Model::random(&common::small_config(8), 1, DType::F32).unwrap();
    gqa::hf::save_hf_dir(&model, &hf, DType::F32).unwrap();
    gqa_fails(&["generate", "--model", hf.to_str().unwrap()], "no tokenizer found");
    std::fs::remove_dir_all(hf).ok();
}

#[test]
#[cfg_attr(not(has_shared), ignore = "needs ../shared (the shared fixtures)")]
fn groups_that_do_not_divide() {
    let dir = common::shared("fixtures/llama2c");
    let bin = dir.join("stories260K.bin");
    gqa_fails(&["generate", "--model", bin.to_str().unwrap(), "-g", "3"], "G must divide");
    // stories260K is GQA (H = 8, 4 key/value heads): 8 is an expansion, 6 is nothing.
    gqa_fails(&["generate", "--model", bin.to_str().unwrap(), "-g", "6"], "choose one of [1, 2, 4, 8]");
    gqa_fails(&["generate", "--model", bin.to_str().unwrap(), "--method", "median"], "mean, first or random");
}

#[test]
#[cfg_attr(not(has_shared), ignore = "needs ../shared (the shared fixtures)")]
fn prompt_longer_than_the_context() {
    let dir = common::shared("fixtures/llama2c");
    let bin = dir.join("stories260K.bin");
    let prompt = "Once upon a time there was a cat. ".repeat(200);
    gqa_fails(&["generate", "--model", bin.to_str().unwrap(), "--prompt", &prompt], "but the context holds 512");
}

#[test]
#[cfg_attr(not(has_shared), ignore = "needs ../shared (the shared fixtures)")]
fn bad_sampling_settings() {
    let dir = common::shared("fixtures/llama2c");
    let bin = dir.join("stories260K.bin");
    gqa_fails(&["generate", "--model", bin.to_str().unwrap(), "--top-p", "0"], "top_p");
    gqa_fails(&["generate", "--model", bin.to_str().unwrap(), "--temperature=-1"], "temperature");
}

#[test]
fn absurd_and_zero_bench_sizes_are_refused_before_allocating() {
    gqa_fails(&["bench", "--dim", "1000000", "--layers", "1000", "--heads", "8"], "parameters");
    gqa_fails(&["bench", "--dim", "0", "--layers", "1", "--heads", "8"], "is 0");
    gqa_fails(&["bench", "--preset", "huge"], "unknown preset");
    // A preset's context grows to the contexts asked, within the limits and the KV
    // cache's memory budget, both checked before the model is made; a model's does not.
    gqa_fails(&["bench", "--preset", "1b", "--contexts", "1000000"], "memory budget");
    gqa_fails(&["bench", "--preset", "tiny", "--contexts", "5000000"], "larger than the supported");
    gqa_fails(&["check-gpu", "--preset", "1b", "--context", "1000000"], "memory budget");
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/www/models/mha");
    gqa_fails(&["bench", "--model", model, "--contexts", "4096"], "context holds 2048");
    gqa_fails(&["bench", "--preset", "tiny", "--contexts", "8", "--steps", "24"], "timed steps");
    gqa_fails(&["bench", "--preset", "tiny", "--groups", "3"], "G must divide");
}

#[test]
#[cfg_attr(not(has_shared), ignore = "needs ../shared (the shared fixtures)")]
fn missing_eval_text() {
    let dir = common::shared("fixtures/llama2c");
    let bin = dir.join("stories260K.bin");
    gqa_fails(&["eval", "--model", bin.to_str().unwrap(), "--text", "/nonexistent.txt"], "cannot read /nonexistent.txt");
}

/// `--max-tokens` at its largest means "the whole text" (it once wrapped to 0 and
/// said the text was too short); `--context` beyond the model's limit is refused.
#[test]
fn largest_max_tokens_and_too_long_context() {
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/www/models/mha");
    let text = temp("eval.txt");
    std::fs::write(&text, "Once upon a time, there was a little girl named Lily. She liked to play outside.").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gqa"))
        .args(["eval", "--model", model, "--text", text.to_str().unwrap(), "--max-tokens", &u64::MAX.to_string(), "--json"])
        .output()
        .expect("run gqa");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["tokens"].as_u64().unwrap() > 10, "{report}");
    std::fs::remove_file(text).ok();
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{model}/config.json")).unwrap()).unwrap();
    let limit = config["max_position_embeddings"].as_u64().unwrap();
    gqa_fails(&["generate", "--model", model, "--context", "100000"], &format!("must be between 1 and the context {limit}"));
}
