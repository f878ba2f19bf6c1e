//! The tokenizer of a GGUF file, from its metadata (`tokenizer.ggml.*`), tokenizing
//! exactly as llama.cpp does. Supported: the byte-level BPE model (`gpt2`, GPT-2's
//! scheme: every byte maps to a printable character, so no text is unknown) with the
//! pre-tokenizers `smollm`, `llama-bpe`, `qwen2` and `gpt-2`.
//!
//! Control tokens (token type 3: BOS, EOS, the chat markers `<|im_start|>` and
//! `<|im_end|>`) are special: written in the text they are one id each (as llama.cpp
//! tokenizes with special tokens parsed, which a chat prompt needs), and decoding
//! leaves them out.

use tokenizers::decoders::byte_level::ByteLevel;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use super::Tokenizer;
use crate::error::{GqaError, Result};
use crate::gguf::{token_type, Gguf};

/// A GGUF file's tokenizer and what a front end needs besides: BOS and the tokens that
/// end a reply. The tokenizer itself knows whether prompts start with BOS
/// (`tokenizer.ggml.add_bos_token`, or llama.cpp's default for the pre-tokenizer) and
/// the chat template (`tokenizer.chat_template`, Jinja; for ChatML ones see
/// [`chatml_prompt`](super::chat::chatml_prompt)).
#[derive(Clone, Debug)]
pub struct GgufTokenizer {
    pub tokenizer: Tokenizer,
    pub bos_id: Option<u32>,
    /// The ids that end generation: `tokenizer.ggml.eos_token_id` and, where the
    /// vocabulary has them, `<|im_end|>` and `<|endoftext|>` (as llama.cpp stops there).
    pub end_of_generation: Vec<u32>,
}

/// The markers llama.cpp also treats as the end of a reply, besides EOS.
const END_MARKERS: [&str; 2] = ["<|im_end|>", "<|endoftext|>"];

/// GPT-2's split: contractions, letters, digits, other symbols (each with one leading
/// space), and runs of spaces (the last space of a run goes with the next word).
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
/// Llama 3's: case-insensitive contractions, digits in threes, newlines kept apart.
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen 2's: Llama 3's with single digits.
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// How llama.cpp (src/llama-vocab.cpp) pre-tokenizes for one `tokenizer.ggml.pre`.
struct PreTokenizer {
    /// Applied in turn: each splits every piece so far at its matches, keeping both
    /// the matches and the text between them.
    regexes: &'static [&'static str],
    /// A piece that is itself a token is that token, whatever the merges would make.
    ignore_merges: bool,
    /// Whether prompts start with BOS when the file does not say.
    add_bos: bool,
}

fn pre_tokenizer(name: &str) -> Result<PreTokenizer> {
    let (regexes, ignore_merges, add_bos): (&'static [&'static str], _, _) = match name {
        // SmolLM: every digit alone, then GPT-2's split.
        "smollm" => (&[r"\p{N}", GPT2], false, false),
        "llama-bpe" | "llama3" | "llama-v3" => (&[LLAMA3], true, true),
        "qwen2" => (&[QWEN2], false, false),
        "gpt-2" => (&[GPT2], false, false),
        other => {
            return Err(GqaError::Tokenizer(format!(
                "the GGUF pre-tokenizer '{other}' is not supported (supported: smollm, llama-bpe, qwen2, gpt-2)"
            )))
        }
    };
    Ok(PreTokenizer { regexes, ignore_merges, add_bos })
}

impl GgufTokenizer {
    /// The tokenizer that `gguf`'s metadata describes.
    pub fn from_gguf(gguf: &Gguf) -> Result<GgufTokenizer> {
        let model = gguf.str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(GqaError::Tokenizer(format!(
                "the GGUF tokenizer model '{model}' is not supported (only 'gpt2', byte-level BPE)"
            )));
        }
        let pre_name = gguf.str("tokenizer.ggml.pre")?;
        let pre = pre_tokenizer(pre_name)?;
        let tokens = gguf.strings("tokenizer.ggml.tokens")?;
        let types = gguf.optional("tokenizer.ggml.token_type", |k| gguf.i32s(k))?;
        let types = types.unwrap_or_else(|| vec![token_type::NORMAL; tokens.len()]);
        if types.len() != tokens.len() {
            return Err(bad(format!("tokenizer.ggml.token_type has {} entries for {} tokens", types.len(), tokens.len())));
        }
        let vocab: Vocab = tokens.iter().enumerate().map(|(id, token)| (token.to_string(), id as u32)).collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges(gguf)?)
            .ignore_merges(pre.ignore_merges)
            .build()
            .map_err(|e| bad(format!("the BPE model cannot be built: {e}")))?;

        let mut inner = tokenizers::Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(splits(&pre)?));
        inner.with_decoder(Some(ByteLevel::new(false, false, false)));
        let added = |kind: i32, special: bool| {
            let of_kind = tokens.iter().zip(&types).filter(move |&(_, &t)| t == kind);
            of_kind.map(move |(&token, _)| AddedToken::from(token, special).normalized(false))
        };
        let cannot_add = |e: tokenizers::Error| bad(format!("the control and user-defined tokens cannot be added: {e}"));
        inner.add_special_tokens(added(token_type::CONTROL, true)).map_err(cannot_add)?;
        inner.add_tokens(added(token_type::USER_DEFINED, false)).map_err(cannot_add)?;
        let mut tokenizer = Tokenizer::wrap(inner);
        // Control tokens in the text are tokens, as llama.cpp parses them.
        tokenizer.inner.set_encode_special_tokens(false);

        let token_id = |key: &str| -> Result<Option<u32>> {
            let Some(id) = gguf.optional(key, |k| gguf.uint(k))? else { return Ok(None) };
            match u32::try_from(id).ok().filter(|&id| (id as usize) < tokens.len()) {
                Some(id) => Ok(Some(id)),
                None => Err(bad(format!("{key} is {id}, outside the {} tokens", tokens.len()))),
            }
        };
        let bos_id = token_id("tokenizer.ggml.bos_token_id")?;
        let add_bos = gguf.optional("tokenizer.ggml.add_bos_token", |k| gguf.bool(k))?;
        let add_bos = add_bos.unwrap_or(pre.add_bos);
        if add_bos && bos_id.is_none() {
            return Err(bad("prompts start with BOS, but tokenizer.ggml.bos_token_id is missing".into()));
        }
        let mut end_of_generation: Vec<u32> = token_id("tokenizer.ggml.eos_token_id")?.into_iter().collect();
        for marker in END_MARKERS {
            if let Some(id) = tokens.iter().position(|t| *t == marker).map(|id| id as u32) {
                if !end_of_generation.contains(&id) {
                    end_of_generation.push(id);
                }
            }
        }
        let chat_template = gguf.optional("tokenizer.chat_template", |k| gguf.str(k))?;
        tokenizer.add_bos = add_bos;
        tokenizer.chat_template = chat_template.map(String::from);
        tokenizer.gguf_pre = Some(pre_name.to_string());
        Ok(GgufTokenizer { tokenizer, bos_id, end_of_generation })
    }

    /// The ids of a prompt: BOS first when the model wants it, then `text`'s tokens.
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>> {
        let bos = self.bos_id.filter(|_| self.tokenizer.add_bos);
        Ok(bos.into_iter().chain(self.tokenizer.encode(text)?).collect())
    }
}

fn bad(message: String) -> GqaError {
    GqaError::Tokenizer(format!("in the GGUF file, {message}"))
}

/// `tokenizer.ggml.merges`: "a b" merges a and b. Byte-level tokens hold no spaces
/// (GPT-2 writes a space as "Ġ"); llama.cpp splits at the first space after the first
/// character all the same, so this does too.
fn merges(gguf: &Gguf) -> Result<Vec<(String, String)>> {
    let merges = gguf.strings("tokenizer.ggml.merges")?;
    let split = |merge: &str| {
        let second = merge.char_indices().nth(1)?.0;
        let space = second + merge[second..].find(' ')?;
        Some((merge[..space].to_string(), merge[space + 1..].to_string()))
    };
    let pair = |merge: &&str| split(merge).ok_or_else(|| bad(format!("the merge {merge:?} is not two tokens and a space between")));
    merges.iter().map(pair).collect()
}

/// The pre-tokenizer: `pre`'s regexes in turn, then each byte of a piece becomes its
/// printable character (the regexes already split, so the byte-level step does not).
fn splits(pre: &PreTokenizer) -> Result<Sequence> {
    let split = |regex: &&str| {
        let split = Split::new(SplitPattern::Regex(regex.to_string()), SplitDelimiterBehavior::Isolated, false);
        Ok(PreTokenizerWrapper::from(split.map_err(|e| bad(format!("the regex {regex} does not compile: {e}")))?))
    };
    let mut steps = pre.regexes.iter().map(split).collect::<Result<Vec<_>>>()?;
    steps.push(ByteLevel::new(false, false, false).into());
    Ok(Sequence::new(steps))
}
