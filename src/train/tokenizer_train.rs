//! A byte-level BPE tokenizer trained on the training text with the `tokenizers`
//! crate: GPT-2 style byte-level pre-tokenization (any text encodes, no unknown
//! tokens), special tokens `<unk>` = 0, `<s>` = 1 (BOS) and `</s>` = 2 (EOS),
//! matching the config defaults.

use tokenizers::models::bpe::{BpeTrainer, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, NormalizerWrapper, PostProcessorWrapper, TokenizerBuilder};

use crate::error::{GqaError, Result};
use crate::tokenizer::Tokenizer;

pub const SPECIAL_TOKENS: [&str; 3] = ["<unk>", "<s>", "</s>"];

/// Train a byte-level BPE of `vocab_size` tokens (special tokens included) on
/// the lines of `text`.
pub fn train_bpe(text: &str, vocab_size: usize) -> Result<Tokenizer> {
    let err = |e: tokenizers::Error| GqaError::Tokenizer(format!("BPE training failed: {e}"));
    let mut trainer = BpeTrainer::builder()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(SPECIAL_TOKENS.iter().map(|t| AddedToken::from(*t, true)).collect())
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut tokenizer = TokenizerBuilder::<BPE, NormalizerWrapper, ByteLevel, PostProcessorWrapper, ByteLevel>::new()
        .with_model(BPE::default())
        .with_normalizer(None)
        .with_pre_tokenizer(Some(ByteLevel::new(false, true, true)))
        .with_post_processor(None)
        .with_decoder(Some(ByteLevel::default()))
        .build()
        .map_err(err)?;
    // Lines keep their newline so that "\n" and "\n\n" get tokens of their own.
    tokenizer.train(&mut trainer, text.split_inclusive('\n')).map_err(err)?;
    let json = tokenizer.to_string(false).map_err(err)?;
    Tokenizer::from_json(json.as_bytes())
}
