//! Writes a random-weight model of a speed preset's shape as a Hugging Face folder,
//! with a tokenizer.json whose vocabulary sets the model's, so that it can be exported
//! (`gqa convert --format gguf`) and compared with another engine (scripts/bench-peer.mjs).
//!
//!   cargo run --release --example random_model -- PRESET TOKENIZER_JSON OUT_DIR [SEED]
//!
//! For example, the 110m preset's shape with the shipped 2048-token vocabulary is an
//! 86M-parameter model: `-- 110m www/models/mha/tokenizer.json target/peer-86m`.

use std::path::PathBuf;

use gqa::model::Model;
use gqa::tensor::DType;
use gqa::tokenizer::Tokenizer;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [preset, tokenizer, out, rest @ ..] = args.as_slice() else {
        return Err("usage: random_model PRESET TOKENIZER_JSON OUT_DIR [SEED]".into());
    };
    let seed: u64 = rest.first().map(|s| s.parse()).transpose()?.unwrap_or(1);
    let tokenizer = Tokenizer::from_json(&std::fs::read(tokenizer)?)?;
    let mut config = gqa::presets::preset(preset)?;
    config.vocab_size = tokenizer.vocab_size();
    config.tie_word_embeddings = true;
    let model = Model::random(&config, seed, DType::F32)?;
    let out = PathBuf::from(out);
    gqa::hf::save_hf_dir(&model, &out, DType::F32)?;
    std::fs::write(out.join("tokenizer.json"), tokenizer.to_json()?)?;
    eprintln!("wrote {}: {preset} shape, vocabulary {}, {:.1}M parameters, seed {seed}", out.display(), config.vocab_size, config.n_params() as f64 / 1e6);
    Ok(())
}
