//! Text <-> token ids, for three kinds of files:
//!
//! * a Hugging Face `tokenizer.json` (any model the `tokenizers` crate reads),
//! * llama2.c's `tokenizer.bin`, converted to an equivalent `tokenizers` BPE model
//!   that encodes and decodes exactly like llama2.c's run.c, and
//! * a GGUF file's metadata ([`gguf`]), with its chat prompts ([`chat`]).
//!
//! Everything works on byte slices and strings (no file system), so the module
//! also runs in the browser (wasm32).
//!
//! `encode` treats its input as plain text: a special token written in the text,
//! such as "<s>", is encoded as ordinary characters, like SentencePiece (and run.c)
//! do; only a GGUF tokenizer parses them, as llama.cpp does. Callers add BOS themselves.

pub mod chat;
pub mod gguf;

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::error::{GqaError, Result};

/// A tokenizer: a `tokenizers::Tokenizer` plus the size of its id space.
#[derive(Clone, Debug)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// 1 + the highest id of the vocabulary and the added tokens.
    vocab_size: usize,
    /// Whether a prompt starts with the model's BOS: always for tokenizer.json and
    /// llama2.c files (as this crate has always done), as its metadata says for GGUF.
    add_bos: bool,
    /// The model's chat template (Jinja), where the file has one (GGUF).
    chat_template: Option<String>,
    /// A GGUF tokenizer's pre-tokenizer name (`tokenizer.ggml.pre`), for the GGUF export.
    pub(crate) gguf_pre: Option<String>,
}

impl Tokenizer {
    /// Loads a Hugging Face `tokenizer.json`.
    ///
    /// The `tokenizers` crate panics, instead of returning an error, on some bad
    /// files, so this parses the text as JSON first (it panics on syntax errors inside
    /// some parts, never on an already parsed value), refuses what panics later (see
    /// [`check_decoder`]), and natively turns the rest (e.g. a `Precompiled`
    /// normalizer with bad data) into an error. (In the browser a panic aborts.)
    pub fn from_json(bytes: &[u8]) -> Result<Tokenizer> {
        let bad = |e: &dyn std::fmt::Display| GqaError::Tokenizer(format!("tokenizer.json cannot be read: {e}"));
        let value: Value = serde_json::from_slice(bytes).map_err(|e| bad(&e))?;
        if let Some(decoder) = value.get("decoder") {
            check_decoder(decoder).map_err(|e| bad(&e))?;
        }
        let parsed = std::panic::catch_unwind(|| serde_json::from_value::<tokenizers::Tokenizer>(value))
            .map_err(|_| bad(&"the tokenizers library failed on it (its message is above)"))?;
        Ok(Tokenizer::wrap(parsed.map_err(|e| bad(&e))?))
    }

    /// Loads llama2.c's `tokenizer.bin` holding `vocab_size` tokens.
    ///
    /// Layout (little endian): i32 max_token_length, then per token
    /// f32 score, i32 len, len bytes of UTF-8 piece. Pieces use real spaces (not "▁").
    /// run.c hard-codes ids 0, 1, 2 as <unk>, <s>, </s> and encodes an unknown byte b
    /// as id b + 3, so ids 3..=258 must be the byte pieces <0x00>..<0xFF>.
    /// Data after the last token is an error: it usually means the file belongs to
    /// a model with a larger vocabulary.
    pub fn from_llama2c(bytes: &[u8], vocab_size: usize) -> Result<Tokenizer> {
        let pieces = read_llama2c(bytes, vocab_size)?;
        let json = llama2c_to_json(&pieces);
        let inner: tokenizers::Tokenizer = serde_json::from_value(json)
            .map_err(|e| GqaError::Tokenizer(format!("cannot build the BPE model: {e}")))?;
        Ok(Tokenizer::wrap(inner))
    }

    fn wrap(mut inner: tokenizers::Tokenizer) -> Tokenizer {
        // Treat "<s>" etc. in the input as text, never as special tokens. This flag is
        // not saved in tokenizer.json, so both constructors set it.
        inner.set_encode_special_tokens(true);
        // A prompt is encoded whole: no truncation, and no padding (a file asking to pad
        // to a fixed length of billions would allocate that much on every encode).
        inner.with_padding(None);
        inner.with_truncation(None).expect("removing truncation cannot fail");
        let vocab_size =
            inner.get_vocab(true).values().max().map_or(0, |&max_id| max_id as usize + 1);
        Tokenizer { inner, vocab_size, add_bos: true, chat_template: None, gguf_pre: None }
    }

    /// Token ids of `text`, without BOS/EOS.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| GqaError::Tokenizer(format!("cannot encode text: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The text of `ids`, skipping special tokens (BOS, EOS, ...).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        if let Some(&token) = ids.iter().find(|&&id| id as usize >= self.vocab_size) {
            return Err(GqaError::BadToken { token, vocab: self.vocab_size });
        }
        self.inner
            .decode(ids, true)
            .map_err(|e| GqaError::Tokenizer(format!("cannot decode tokens: {e}")))
    }

    /// Whether prompts start with the model's BOS token.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// The model's chat template, if its file has one.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// Whether the model chats in ChatML (`<|im_start|>role ... <|im_end|>`), the one
    /// template family [`chat::chatml_prompt`] writes.
    pub fn is_chatml(&self) -> bool {
        self.chat_template().is_some_and(|t| t.contains("<|im_start|>")) && self.inner.token_to_id("<|im_start|>").is_some()
    }

    /// Number of token ids, added tokens included (1 + the highest id).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The tokenizer as pretty-printed tokenizer.json, readable by `from_json`.
    pub fn to_json(&self) -> Result<String> {
        self.inner
            .to_string(true)
            .map_err(|e| GqaError::Tokenizer(format!("cannot write tokenizer.json: {e}")))
    }

    /// The vocabulary string of token `id` (e.g. " the", "<0x0A>", "<s>").
    pub fn token_to_piece(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// A decoder for printing the tokens generated after `prompt_ids` (the ids the
    /// model was given, BOS included) as they come. It holds its own copy of the
    /// tokenizer, so a front end can keep it between calls (the page's worker).
    pub fn stream_after(&self, prompt_ids: &[u32]) -> Result<TextStream> {
        if let Some(&token) = prompt_ids.iter().find(|&&id| id as usize >= self.vocab_size) {
            return Err(GqaError::BadToken { token, vocab: self.vocab_size });
        }
        let mut stream = TextStream {
            tokenizer: self.clone(),
            ids: prompt_ids.to_vec(),
            printed: prompt_ids.len(),
            in_byte_run: false,
        };
        prompt_ids.iter().for_each(|&id| stream.note_byte_piece(id));
        Ok(stream)
    }
}

/// Streaming decoder of a continuation: `push` each generated id and print what it
/// returns, then print `finish()`. The prompt's text followed by all the returned
/// pieces equals `decode(prompt ids + generated ids)`: a space the decoder strips at
/// the start of a text (the dummy prefix, which run.c strips only right after BOS) is
/// kept between the prompt and the continuation.
///
/// Each push decodes only the ids since the last *stable point*, a place where the
/// text decoded so far can no longer change, so a token costs the same at any length
/// (as text-generation-inference's prefix/read offsets do). The window `ids` starts at
/// the stable point before the last one: decoding it and cutting off the decoding of
/// `ids[..printed]` yields exactly the new text, because the decoder treats both
/// spans' starts alike.
///
/// Text is held back while it may still change: while it ends in an incomplete
/// UTF-8 sequence (U+FFFD), and while the last token is a byte piece <0xNN> (the
/// byte-fallback decoder turns a whole run of byte pieces into text at once, so a
/// later byte can still change how the run decodes).
pub struct TextStream {
    tokenizer: Tokenizer,
    /// The ids from the stable point before the last one.
    ids: Vec<u32>,
    /// `ids[..printed]` end at the last stable point: their text was printed (or
    /// is the prompt's).
    printed: usize,
    /// The last non-special token is a byte piece.
    in_byte_run: bool,
}

impl TextStream {
    /// Adds one token; returns the newly completed text (often empty).
    pub fn push(&mut self, id: u32) -> Result<String> {
        if id as usize >= self.tokenizer.vocab_size {
            return Err(GqaError::BadToken { token: id, vocab: self.tokenizer.vocab_size });
        }
        self.ids.push(id);
        self.note_byte_piece(id);
        if self.in_byte_run {
            return Ok(String::new());
        }
        let (printed, text) = self.decode_window()?;
        if text.ends_with('\u{FFFD}') {
            return Ok(String::new());
        }
        Ok(self.advance(&printed, &text))
    }

    /// Returns the text still held back (e.g. an unfinished byte sequence, as U+FFFD).
    pub fn finish(&mut self) -> Result<String> {
        let (printed, text) = self.decode_window()?;
        Ok(self.advance(&printed, &text))
    }

    /// Special tokens decode to nothing: they neither open nor close a run of bytes.
    fn note_byte_piece(&mut self, id: u32) {
        let inner = &self.tokenizer.inner;
        if let Some(piece) = inner.id_to_token(id) {
            if !inner.get_added_vocabulary().is_special_token(&piece) {
                self.in_byte_run = is_byte_piece(&piece);
            }
        }
    }

    /// The decodings of `ids[..printed]` and of all of `ids`.
    fn decode_window(&self) -> Result<(String, String)> {
        Ok((self.tokenizer.decode(&self.ids[..self.printed])?, self.tokenizer.decode(&self.ids)?))
    }

    /// Makes the end of `ids` the last stable point; returns the part of `text`
    /// (the window's decoding) after `printed` (the decoding of its printed ids).
    fn advance(&mut self, printed: &str, text: &str) -> String {
        self.ids.drain(..self.printed);
        self.printed = self.ids.len();
        match text.strip_prefix(printed) {
            Some(new) => new.to_string(),
            // Only a run of byte pieces that the prompt ended with, continued by
            // bytes that make it invalid UTF-8, decodes differently once extended
            // (its characters become U+FFFD). What was printed cannot be taken back,
            // so skip as many bytes as it had, as text-generation-inference does.
            None => {
                let mut start = printed.len().min(text.len());
                while !text.is_char_boundary(start) {
                    start += 1;
                }
                text[start..].to_string()
            }
        }
    }
}

/// Refuses a decoder the `tokenizers` crate would panic on while decoding: a `Strip`
/// that strips at the end (`stop` > 0) indexes before the start of a piece shorter
/// than `stop` made only of the stripped character, such as the empty text (which a
/// `Fuse` decoder makes of no tokens). The crate also reads a decoder whose `type` it
/// does not know by its fields, so this goes by the fields too: no decoder but
/// `Strip` has a `stop`, none but `Sequence` has `decoders`.
fn check_decoder(decoder: &Value) -> std::result::Result<(), String> {
    if let Some(stop) = decoder.get("stop").filter(|stop| stop.as_u64() != Some(0)) {
        return Err(format!("its Strip decoder strips at the end (stop {stop}), which is not supported"));
    }
    match decoder.get("decoders").and_then(Value::as_array) {
        Some(decoders) => decoders.iter().try_for_each(check_decoder),
        None => Ok(()),
    }
}

/// Whether `piece` is a byte piece like "<0x0A>" (the rule of the ByteFallback decoder).
fn is_byte_piece(piece: &str) -> bool {
    piece
        .strip_prefix("<0x")
        .and_then(|rest| rest.strip_suffix('>'))
        .is_some_and(|hex| hex.len() == 2 && u8::from_str_radix(hex, 16).is_ok())
}

/// One vocabulary entry of tokenizer.bin.
struct Piece {
    text: String,
    score: f32,
}

/// Parses and validates tokenizer.bin. Never trusts a number before checking it
/// against the bytes that are really there.
fn read_llama2c(bytes: &[u8], vocab_size: usize) -> Result<Vec<Piece>> {
    let bad = |msg: String| GqaError::Tokenizer(msg);
    if vocab_size < 259 {
        return Err(bad(format!(
            "vocab_size is {vocab_size}, but a llama2.c tokenizer needs at least 259 tokens \
             (<unk>, <s>, </s> and the 256 byte pieces)"
        )));
    }
    if bytes.is_empty() {
        return Err(bad("tokenizer.bin is empty".into()));
    }
    let mut rest = bytes;
    let max_token_length = take_i32(&mut rest).ok_or_else(|| {
        bad(format!("tokenizer.bin is truncated: {} bytes, but the header needs 4", bytes.len()))
    })?;
    if max_token_length <= 0 {
        return Err(bad(format!("max_token_length is {max_token_length}; it must be positive")));
    }

    let mut pieces = Vec::new();
    for i in 0..vocab_size {
        let truncated = || bad(format!("tokenizer.bin is truncated at token {i} of {vocab_size}"));
        let score = take_f32(&mut rest).ok_or_else(truncated)?;
        let len = take_i32(&mut rest).ok_or_else(truncated)?;
        if len <= 0 {
            return Err(bad(format!("token {i} has length {len}; lengths must be positive")));
        }
        if len > max_token_length {
            return Err(bad(format!(
                "token {i} has length {len}, more than max_token_length {max_token_length}"
            )));
        }
        let len = len as usize;
        if len > rest.len() {
            return Err(bad(format!(
                "tokenizer.bin is truncated at token {i} of {vocab_size}: \
                 its piece needs {len} bytes, but only {} remain",
                rest.len()
            )));
        }
        let (text, tail) = rest.split_at(len);
        rest = tail;
        let text = std::str::from_utf8(text)
            .map_err(|e| bad(format!("token {i} is not valid UTF-8: {e}")))?;
        pieces.push(Piece { text: text.to_string(), score });
    }
    if !rest.is_empty() {
        return Err(bad(format!(
            "tokenizer.bin has {} bytes after its {vocab_size} tokens; \
             does it belong to a model with a larger vocabulary?",
            rest.len()
        )));
    }

    for byte in 0..=255u8 {
        let id = byte as usize + 3;
        let expected = format!("<0x{byte:02X}>");
        if pieces[id].text != expected {
            return Err(bad(format!(
                "token {id} is {:?}, but llama2.c expects the byte piece {expected} there",
                pieces[id].text
            )));
        }
    }
    Ok(pieces)
}

/// Reads 4 little-endian bytes from the front of `rest`, if there are 4.
fn take_4(rest: &mut &[u8]) -> Option<[u8; 4]> {
    let (head, tail) = rest.split_first_chunk::<4>()?;
    *rest = tail;
    Some(*head)
}

fn take_i32(rest: &mut &[u8]) -> Option<i32> {
    take_4(rest).map(i32::from_le_bytes)
}

fn take_f32(rest: &mut &[u8]) -> Option<f32> {
    take_4(rest).map(f32::from_le_bytes)
}

/// The tokenizer.json of a `tokenizers` BPE model that does what run.c does.
///
/// run.c's encode: prepend " " to non-empty text; look up each UTF-8 character
/// (unknown ones become byte pieces); then, while possible, merge the adjacent pair
/// whose concatenation is a piece with the highest score (leftmost on ties).
/// A BPE model does the same if every pair of pieces that concatenates to a piece is
/// a merge, ranked by the score of the result (higher score = lower rank = first).
///
/// One difference cannot be expressed with merge ranks: run.c breaks equal scores by
/// position, BPE by rank. With distinct scores (as SentencePiece exports) this only
/// matters between two splits of the same piece, e.g. "a"+"aa" vs "aa"+"a".
/// Merges into <unk>, <s> and </s> are left out: special tokens never come from text.
fn llama2c_to_json(pieces: &[Piece]) -> Value {
    const SPECIALS: [&str; 3] = ["<unk>", "<s>", "</s>"];

    // piece -> id. A piece listed twice keeps its first id; the later id stays unused.
    let mut vocab: HashMap<&str, u32> = HashMap::new();
    for (id, piece) in pieces.iter().enumerate() {
        let text = SPECIALS.get(id).copied().unwrap_or(&piece.text);
        vocab.entry(text).or_insert(id as u32);
    }

    // Every split of a normal piece into two normal pieces is a merge. run.c starts from
    // best_score = -1e10 and uses `>`, so pieces scoring -1e10 or less (or NaN) never merge.
    let mut mergeable: Vec<(u32, &Piece)> = vocab
        .iter()
        .filter(|&(_, &id)| id >= 3)
        .map(|(_, &id)| (id, &pieces[id as usize]))
        .filter(|(_, piece)| piece.score > -1e10)
        .collect();
    // Highest score first; equal scores by id, for a deterministic order.
    mergeable.sort_by(|(id_a, a), (id_b, b)| b.score.total_cmp(&a.score).then(id_a.cmp(id_b)));
    let is_normal = |s: &str| vocab.get(s).is_some_and(|&id| id >= 3);
    let mut merges = Vec::new();
    for (_, piece) in mergeable {
        let text = piece.text.as_str();
        for (split, _) in text.char_indices().skip(1) {
            let (left, right) = text.split_at(split);
            if is_normal(left) && is_normal(right) {
                merges.push([left, right]);
            }
        }
    }

    let added_tokens: Vec<Value> = SPECIALS
        .iter()
        .enumerate()
        .map(|(id, content)| {
            json!({
                "id": id, "content": content, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true
            })
        })
        .collect();

    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added_tokens,
        // run.c's dummy prefix; Prepend adds nothing to an empty string.
        "normalizer": { "type": "Prepend", "prepend": " " },
        // SentencePiece does not split on whitespace: the whole text is one "word".
        "pre_tokenizer": null,
        "post_processor": null,
        // Byte pieces -> bytes -> UTF-8, join, then drop the dummy prefix's space
        // (run.c strips the leading space of the first piece after BOS).
        "decoder": {
            "type": "Sequence",
            "decoders": [
                { "type": "ByteFallback" },
                { "type": "Fuse" },
                { "type": "Strip", "content": " ", "start": 1, "stop": 0 }
            ]
        },
        "model": {
            "type": "BPE",
            "dropout": null,
            "unk_token": "<unk>",
            "continuing_subword_prefix": null,
            "end_of_word_suffix": null,
            "fuse_unk": false,
            "byte_fallback": true,
            "ignore_merges": false,
            "vocab": vocab,
            "merges": merges
        }
    })
}
