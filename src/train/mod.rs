//! Training the model family (cargo feature `train`, native only): a byte-level
//! BPE tokenizer, an MHA base pretrained from scratch with candle on the CPU,
//! and the GQA paper's uptraining recipe (Algorithms 4 and 5) on top of it.
//!
//! * [`tokenizer_train`]: BPE training with the `tokenizers` crate.
//! * [`data`]: the text as a token stream, cut into BOS-led windows.
//! * [`model`]: the decoder as a candle graph, equal to the inference engine.
//! * [`optim`]: AdamW with a saved state, warmup + cosine schedule, clipping.
//! * [`trainer`]: the loop, logs, checkpoints and resume.
//! * [`recipe`]: the paper's recipe end to end (`gqa train --recipe paper`).
//! * [`scoring`]: how the recipe scores each variant against the base.
//! * [`tables`]: results.json as Markdown for docs/MODEL_CARD.md (`--recipe table`).

pub mod data;
pub mod model;
pub mod optim;
pub mod recipe;
pub mod scoring;
pub mod tables;
pub mod tokenizer_train;
pub mod trainer;
