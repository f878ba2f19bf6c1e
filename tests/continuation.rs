//! `TextStream` continuing a prompt: the prompt's text followed by the streamed text
//! must equal the text the ids stand for, for every place a prompt can end (inside
//! a word, before a space, inside a run of byte pieces), with three decoders:
//! llama2.c's tokenizer.bin (byte fallback, the dummy-prefix space stripped only
//! after BOS, as run.c does), a byte-level BPE (the shipped models' tokenizer.json)
//! and a Metaspace ("▁") tokenizer built here. The reference text is the original
//! string the ids were encoded from, never the stream's own output; and for the
//! stories260K checkpoint, the text llama2.c's run.c prints.

mod common;

use gqa::llama2c::load_llama2c;
use gqa::sampler::SamplerConfig;
use gqa::generation::GenerateParams;
use gqa::session::Session;
use gqa::tokenizer::Tokenizer;
use tokenizers::models::bpe::{BpeTrainer, BPE};
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::{AddedToken, NormalizerWrapper, PostProcessorWrapper, TokenizerBuilder};

const BOS: u32 = 1;

/// Texts every tokenizer below can encode and decode back unchanged.
const TEXTS: &[&str] = &[
    "Lily and Ben were playing in the park.",
    "Once upon a time, there was a little girl named Lily. She loved to play outside.",
    "Tom said, \"I want the red ball!\" Mom smiled.\nThe end.",
    "Grandpa's unbelievably enormous strawberries disappeared mysteriously overnight.",
];

/// Texts with characters outside the llama2.c and byte-level vocabularies, so their
/// ids include runs of byte pieces (or byte-level tokens that split a character).
const NON_ASCII: &[&str] = &["The café served crème brûlée.", "Ben saw 🙂🚀 and 中文 in the sky."];

/// Pushes `generated` after `prompt`; returns every piece, then `finish()`'s text.
fn stream(tok: &Tokenizer, prompt: &[u32], generated: &[u32]) -> Vec<String> {
    let mut stream = tok.stream_after(prompt).unwrap();
    let mut pieces: Vec<String> = generated.iter().map(|&id| stream.push(id).unwrap()).collect();
    pieces.push(stream.finish().unwrap());
    pieces
}

/// Encodes `text` (BOS first) and cuts the ids after every prompt length whose
/// decoding is the start of `text` (a prompt is whole text, never half a character):
/// the prompt's decoding plus the streamed text must be `text` itself.
/// Returns how many cuts fell inside a word and how many before a space.
fn check_every_cut(tok: &Tokenizer, text: &str) -> (usize, usize) {
    let ids: Vec<u32> = std::iter::once(BOS).chain(tok.encode(text).unwrap()).collect();
    let (mut inside_word, mut before_space) = (0, 0);
    for cut in 1..=ids.len() {
        let (prompt, generated) = ids.split_at(cut);
        let prompt_text = tok.decode(prompt).unwrap();
        let Some(expected) = text.strip_prefix(prompt_text.as_str()) else { continue };
        let pieces = stream(tok, prompt, generated);
        assert_eq!(pieces.concat(), expected, "prompt {prompt_text:?} in {text:?}");
        if text.is_ascii() {
            // Nothing is held back at the end of plain text: every piece came out when its token did.
            assert_eq!(pieces.last().unwrap(), "", "prompt {prompt_text:?} in {text:?}");
        }
        match expected.chars().next() {
            Some(' ') => before_space += 1,
            Some(c) if c.is_alphanumeric() && prompt_text.ends_with(char::is_alphanumeric) => inside_word += 1,
            _ => {}
        }
    }
    (inside_word, before_space)
}

/// Checks every cut of every text; each tokenizer must meet prompts ending both
/// inside a word and before a space.
fn check_tokenizer(tok: &Tokenizer, texts: &[&str]) {
    let (mut inside_word, mut before_space) = (0, 0);
    for text in texts {
        let (inside, before) = check_every_cut(tok, text);
        inside_word += inside;
        before_space += before;
    }
    assert!(inside_word > 0 && before_space > 0, "cuts inside a word: {inside_word}, before a space: {before_space}");
}

fn llama2c_tokenizer() -> Tokenizer {
    let path = common::shared("fixtures/llama2c/tok512.bin");
    Tokenizer::from_llama2c(&std::fs::read(path).unwrap(), 512).unwrap()
}

#[test]
#[cfg_attr(not(has_shared), ignore = "needs ../shared (the shared fixtures)")]
fn llama2c_tokenizer_continues_every_prompt() {
    let tok = llama2c_tokenizer();
    check_tokenizer(&tok, TEXTS);
    check_tokenizer(&tok, NON_ASCII);
}

#[test]
#[cfg_attr(not(has_shared), ignore = "needs ../shared (the shared fixtures)")]
fn llama2c_tokenizer_keeps_the_space_after_the_prompt() {
    let tok = llama2c_tokenizer();
    let prompt: Vec<u32> = std::iter::once(BOS).chain(tok.encode("Lily and Ben").unwrap()).collect();
    let generated = tok.encode("were playing").unwrap();
    assert_eq!(stream(&tok, &prompt, &generated).concat(), " were playing");
    // Right after BOS the dummy prefix's space goes, as in run.c.
    assert_eq!(stream(&tok, &[BOS], &generated).concat(), "were playing");
}

/// A prompt ending in byte pieces ("ü" is not in tok512's vocabulary) whose run the
/// continuation extends: held back until the character is complete.
#[test]
#[cfg_attr(not(has_shared), ignore = "needs ../shared (the shared fixtures)")]
fn llama2c_tokenizer_continues_a_byte_run_of_the_prompt() {
    let tok = llama2c_tokenizer();
    let byte = |b: u8| b as u32 + 3;
    let prompt: Vec<u32> = std::iter::once(BOS).chain(tok.encode("Lily said ü").unwrap()).collect();
    assert_eq!(prompt.last(), Some(&byte(0xBC)));
    let mut stream = tok.stream_after(&prompt).unwrap();
    assert_eq!(stream.push(byte(0xC3)).unwrap(), "");
    assert_eq!(stream.push(byte(0xA4)).unwrap(), "");
    let space_a = tok.encode("a").unwrap(); // " a": the dummy prefix makes it one piece
    assert_eq!(stream.push(space_a[0]).unwrap(), "ä a");
    // A byte that makes the prompt's run invalid UTF-8 cannot take back the printed
    // "ü": the stream goes on with U+FFFD for the broken bytes.
    let mut stream = tok.stream_after(&prompt).unwrap();
    assert_eq!(stream.push(byte(0x80)).unwrap(), "");
    let text = stream.push(space_a[0]).unwrap();
    assert!(text.starts_with('\u{FFFD}') && text.ends_with(" a"), "{text:?}");
}

#[test]
fn byte_level_bpe_continues_every_prompt() {
    let json = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/www/models/mha/tokenizer.json")).unwrap();
    let tok = Tokenizer::from_json(&json).unwrap();
    check_tokenizer(&tok, TEXTS);
    check_tokenizer(&tok, NON_ASCII);
}

/// A small BPE over Metaspace pre-tokenization (words start with "▁", the decoder
/// drops the first one), trained on TEXTS, with <unk>, <s>, </s> as ids 0, 1, 2.
fn metaspace_tokenizer() -> Tokenizer {
    let specials = ["<unk>", "<s>", "</s>"].map(|t| AddedToken::from(t, true));
    let alphabet = TEXTS.iter().flat_map(|t| t.chars()).chain(['▁']).collect();
    let mut trainer = BpeTrainer::builder()
        .vocab_size(120)
        .show_progress(false)
        .special_tokens(specials.to_vec())
        .initial_alphabet(alphabet)
        .build();
    let metaspace = Metaspace::new('▁', PrependScheme::Always, true);
    let mut tokenizer = TokenizerBuilder::<BPE, NormalizerWrapper, Metaspace, PostProcessorWrapper, Metaspace>::new()
        .with_model(BPE::default())
        .with_normalizer(None)
        .with_pre_tokenizer(Some(metaspace.clone()))
        .with_post_processor(None)
        .with_decoder(Some(metaspace))
        .build()
        .unwrap();
    tokenizer.train(&mut trainer, TEXTS.iter().map(|t| t.to_string())).unwrap();
    Tokenizer::from_json(tokenizer.to_string(false).unwrap().as_bytes()).unwrap()
}

#[test]
fn metaspace_tokenizer_continues_every_prompt() {
    let tok = metaspace_tokenizer();
    assert_eq!(tok.token_to_piece(BOS).as_deref(), Some("<s>"));
    check_tokenizer(&tok, TEXTS);
}

/// What llama2.c's run.c (github.com/karpathy/llama2.c, commit 350e04f) prints for
///   cc -O3 -o run run.c -lm
///   ./run stories260K.bin -z tok512.bin -t 0 -n 64 -i "<prompt>"
/// without the newline it ends with: the prompt and the greedy continuation,
/// 64 positions in all (BOS and the prompt's tokens included).
const RUN_C: [(&str, &str); 2] = [
    (
        "Lily and Ben",
        "Lily and Ben were playing in the park. They liked to play with their toys and run around the park. \
         They saw a big box with a big box. They wanted to play with the box.\n\"",
    ),
    (
        "Once upon a time",
        "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. \
         One day, she saw a big, red ball. She wanted to play with it, but it was too high.\nLily",
    ),
];

#[test]
#[cfg_attr(not(has_shared), ignore = "needs ../shared (the shared fixtures)")]
fn stories260k_continues_prompts_like_run_c() {
    let tok = llama2c_tokenizer();
    let model = load_llama2c(&std::fs::read(common::shared("fixtures/llama2c/stories260K.bin")).unwrap()).unwrap();
    let mut session = Session::cpu(model, Some(tok.clone()), None).unwrap();
    for (prompt, expected) in RUN_C {
        let prompt_tokens = 1 + tok.encode(prompt).unwrap().len();
        let params = GenerateParams { max_tokens: 64 - (prompt_tokens - 1), sampler: SamplerConfig::default() };
        let text = session.generate(prompt, &params, &mut |_| true).unwrap();
        assert_eq!(format!("{prompt}{text}"), expected);
    }
}
