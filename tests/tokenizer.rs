//! Tests for src/tokenizer/mod.rs. The main check: our `tokenizers`-based conversion of
//! llama2.c's tokenizer.bin encodes and decodes exactly like a direct port of run.c.

mod common;

use std::collections::HashMap;

use gqa::tokenizer::Tokenizer;

const VOCAB_SIZE: usize = 512;
const BOS: u32 = 1;

/// tok512.bin and val.txt from ../shared.
fn fixtures() -> (Vec<u8>, String) {
    let tok = std::fs::read(common::shared("fixtures/llama2c/tok512.bin")).unwrap();
    (tok, std::fs::read_to_string(common::shared("data/tinystories/val.txt")).unwrap())
}

/// Hand-picked texts: edge cases, non-ASCII, and special-token look-alikes
/// (which must be encoded as plain text).
const TEXTS: &[&str] = &[
    "",
    " ",
    "  ",
    "   x",
    "Once upon a time",
    "Once upon a time, there was a little girl named Lily.\nShe loved to play outside.",
    "line one\n\nline three\n",
    "\t tabs\tand  double  spaces ",
    "café, naïve, résumé",
    "emoji: 🙂🚀 done",
    "中文字符 and 日本語",
    "<s> </s> <unk> <0x41> <0xZZ>",
    "aaaaaaaaaa!!!!!!....",
];

/// Test texts: TEXTS, the first 300 lines of val.txt, and a few longer chunks of it.
fn corpus(val: &str) -> Vec<String> {
    let mut texts: Vec<String> = TEXTS.iter().map(|s| s.to_string()).collect();
    texts.extend(val.lines().take(300).map(str::to_string));
    let chars: Vec<char> = val.chars().collect();
    for start in [0, 1000, 5000, 20000] {
        let end = (start + 700).min(chars.len());
        texts.push(chars[start.min(end)..end].iter().collect());
    }
    texts
}

/// A direct port of llama2.c's run.c tokenizer (encode and decode), on raw bytes.
struct RunC {
    vocab: Vec<Vec<u8>>,
    scores: Vec<f32>,
    lookup: HashMap<Vec<u8>, u32>,
}

impl RunC {
    fn load(bytes: &[u8], vocab_size: usize) -> RunC {
        let word = |at: usize| <[u8; 4]>::try_from(&bytes[at..at + 4]).unwrap();
        let mut at = 4; // skip max_token_length
        let (mut vocab, mut scores) = (Vec::new(), Vec::new());
        for _ in 0..vocab_size {
            scores.push(f32::from_le_bytes(word(at)));
            let len = i32::from_le_bytes(word(at + 4)) as usize;
            vocab.push(bytes[at + 8..at + 8 + len].to_vec());
            at += 8 + len;
        }
        let mut lookup = HashMap::new();
        for (id, piece) in vocab.iter().enumerate() {
            lookup.entry(piece.clone()).or_insert(id as u32);
        }
        RunC { vocab, scores, lookup }
    }

    /// run.c encode(text, bos=0, eos=0).
    fn encode(&self, text: &str) -> Vec<u32> {
        let text = text.as_bytes();
        let mut tokens = Vec::new();
        if !text.is_empty() {
            tokens.push(self.lookup[&b" "[..]]); // dummy prefix
        }
        // One UTF-8 character at a time: a leading byte plus its continuation bytes.
        let mut i = 0;
        while i < text.len() {
            let mut end = i + 1;
            while end < text.len() && text[end] & 0xC0 == 0x80 && end - i < 4 {
                end += 1;
            }
            match self.lookup.get(&text[i..end]) {
                Some(&id) => tokens.push(id),
                None => tokens.extend(text[i..end].iter().map(|&b| b as u32 + 3)),
            }
            i = end;
        }
        // Merge the best-scoring adjacent pair until no pair is in the vocabulary.
        loop {
            let mut best: Option<(f32, u32, usize)> = None;
            for i in 0..tokens.len().saturating_sub(1) {
                let mut pair = self.vocab[tokens[i] as usize].clone();
                pair.extend_from_slice(&self.vocab[tokens[i + 1] as usize]);
                if let Some(&id) = self.lookup.get(&pair) {
                    let score = self.scores[id as usize];
                    if score > best.map_or(-1e10, |(s, _, _)| s) {
                        best = Some((score, id, i));
                    }
                }
            }
            let Some((_, id, i)) = best else { break };
            tokens[i] = id;
            tokens.remove(i + 1);
        }
        tokens
    }

    /// run.c decode(prev_token, token): the bytes printed for `token`.
    fn decode(&self, prev: u32, token: u32) -> Vec<u8> {
        let mut piece = &self.vocab[token as usize][..];
        if prev == BOS && piece.first() == Some(&b' ') {
            piece = &piece[1..];
        }
        // sscanf(piece, "<0x%02hhX>", &byte)
        if piece.len() == 6 && piece.starts_with(b"<0x") {
            if let Ok(byte) = u8::from_str_radix(std::str::from_utf8(&piece[3..5]).unwrap(), 16) {
                return vec![byte];
            }
        }
        piece.to_vec()
    }

    /// run.c's generation output for [BOS] + ids.
    fn decode_all(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        let mut prev = BOS;
        for &id in ids {
            bytes.extend(self.decode(prev, id));
            prev = id;
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

fn load() -> (Tokenizer, RunC, String) {
    let (bin, val) = fixtures();
    let tok = Tokenizer::from_llama2c(&bin, VOCAB_SIZE).expect("tok512.bin should load");
    (tok, RunC::load(&bin, VOCAB_SIZE), val)
}

#[test]
#[cfg_attr(not(has_shared), ignore = "needs ../shared (the shared fixtures)")]
fn basic_properties() {
    let (tok, _, _) = load();
    assert_eq!(tok.vocab_size(), VOCAB_SIZE);
    assert_eq!(tok.token_to_piece(0).as_deref(), Some("<unk>"));
    assert_eq!(tok.token_to_piece(1).as_deref(), Some("<s>"));
    assert_eq!(tok.token_to_piece(2).as_deref(), Some("</s>"));
    assert_eq!(tok.token_to_piece(13).as_deref(), Some("<0x0A>"));
    assert_eq!(tok.token_to_piece(261).as_deref(), Some(" a"));
    assert_eq!(tok.token_to_piece(VOCAB_SIZE as u32), None);
    assert!(tok.encode("").unwrap().is_empty());
    assert!(tok.decode(&[VOCAB_SIZE as u32]).is_err());
}

#[test]
#[cfg_attr(not(has_shared), ignore = "needs ../shared (the shared fixtures)")]
fn encode_matches_run_c() {
    let (tok, runc, val) = load();
    for text in corpus(&val) {
        assert_eq!(tok.encode(&text).unwrap(), runc.encode(&text), "text: {text:?}");
    }
}

/// Pseudo-random strings glued from vocabulary pieces and odd characters, to reach
/// merge orders that plain English text may not.
#[test]
#[cfg_attr(not(has_shared), ignore = "needs ../shared (the shared fixtures)")]
fn encode_matches_run_c_on_random_strings() {
    let (tok, runc, _) = load();
    let extra = ["é", "中", "🙂", "\n", "<s>", "  ", "aa", "a"];
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = |n: usize| {
        // xorshift64
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    for _ in 0..2000 {
        let mut text = String::new();
        for _ in 0..next(12) {
            if next(4) == 0 {
                text.push_str(extra[next(extra.len())]);
            } else {
                // a normal piece (ids 259.. ; below are specials and byte pieces)
                let id = 259 + next(VOCAB_SIZE - 259);
                text.push_str(std::str::from_utf8(&runc.vocab[id]).unwrap());
            }
        }
        assert_eq!(tok.encode(&text).unwrap(), runc.encode(&text), "text: {text:?}");
    }
}

#[test]
#[cfg_attr(not(has_shared), ignore = "needs ../shared (the shared fixtures)")]
fn decode_round_trips_ascii_text() {
    let (tok, _, val) = load();
    for line in val.lines().take(300).filter(|line| line.is_ascii()) {
        assert_eq!(tok.decode(&tok.encode(line).unwrap()).unwrap(), line);
    }
}

#[test]
#[cfg_attr(not(has_shared), ignore = "needs ../shared (the shared fixtures)")]
fn decode_matches_run_c() {
    let (tok, runc, val) = load();
    for text in corpus(&val) {
        let ids = tok.encode(&text).unwrap();
        assert_eq!(tok.decode(&ids).unwrap(), runc.decode_all(&ids), "text: {text:?}");
    }
}

#[test]
#[cfg_attr(not(has_shared), ignore = "needs ../shared (the shared fixtures)")]
fn json_round_trip_encodes_identically() {
    let (tok, _, val) = load();
    let json = tok.to_json().unwrap();
    let back = Tokenizer::from_json(json.as_bytes()).unwrap();
    assert_eq!(back.vocab_size(), tok.vocab_size());
    assert_eq!(back.to_json().unwrap(), json);
    for text in corpus(&val) {
        let ids = tok.encode(&text).unwrap();
        assert_eq!(back.encode(&text).unwrap(), ids, "text: {text:?}");
        assert_eq!(back.decode(&ids).unwrap(), tok.decode(&ids).unwrap());
    }
}

/// Pushes `ids` one at a time after BOS; returns all the pieces together.
fn streamed(tok: &Tokenizer, ids: &[u32]) -> String {
    let mut stream = tok.stream_after(&[BOS]).unwrap();
    let mut text = String::new();
    for &id in ids {
        text += &stream.push(id).unwrap();
    }
    text + &stream.finish().unwrap()
}

#[test]
#[cfg_attr(not(has_shared), ignore = "needs ../shared (the shared fixtures)")]
fn stream_matches_run_c() {
    let (tok, runc, val) = load();
    for text in corpus(&val) {
        let ids = tok.encode(&text).unwrap();
        assert_eq!(streamed(&tok, &ids), runc.decode_all(&ids), "text: {text:?}");
    }
}

#[test]
#[cfg_attr(not(has_shared), ignore = "needs ../shared (the shared fixtures)")]
fn stream_holds_back_byte_runs() {
    let (tok, _, _) = load();
    // "中" is three byte pieces: nothing is printed until the character is complete.
    let zhong: Vec<u32> = "中".bytes().map(|b| b as u32 + 3).collect();
    let mut stream = tok.stream_after(&[BOS]).unwrap();
    assert_eq!(stream.push(zhong[0]).unwrap(), "");
    assert_eq!(stream.push(zhong[1]).unwrap(), "");
    assert_eq!(stream.push(zhong[2]).unwrap(), "");
    assert_eq!(stream.push(261).unwrap(), "中 a");
    assert_eq!(stream.finish().unwrap(), "");

    // Byte runs broken by BOS, invalid UTF-8, and a run that ends the stream:
    // the pieces add up to the decoding of all the ids at once.
    let a = 261;
    let b = |byte: u8| byte as u32 + 3;
    for ids in [
        vec![b(0xE4), BOS, b(0xB8), b(0xAD), a],
        vec![b(0xE4), b(0xB8), b(0xAD), b(0xE4), a, b(0xFF)],
        vec![a, b(0xF0), b(0x9F), b(0x99)],
        vec![BOS, 2, a, 0],
    ] {
        let all: Vec<u32> = std::iter::once(BOS).chain(ids.iter().copied()).collect();
        assert_eq!(streamed(&tok, &ids), tok.decode(&all).unwrap(), "ids: {ids:?}");
    }
}

/// tokenizer.bin may list a piece twice: the first id wins (in run.c's lookup too),
/// the later id decodes to nothing.
#[test]
#[cfg_attr(not(has_shared), ignore = "needs ../shared (the shared fixtures)")]
fn duplicate_pieces() {
    let (bin_bytes, val) = fixtures();
    let original = RunC::load(&bin_bytes, VOCAB_SIZE);
    let mut pieces: Vec<&[u8]> = original.vocab.iter().map(Vec::as_slice).collect();
    pieces[300] = b" a"; // already id 261
    pieces[301] = b"<s>"; // the name of special token 1
    let tokens: Vec<(f32, i32, &[u8])> =
        pieces.iter().zip(&original.scores).map(|(p, &s)| (s, p.len() as i32, *p)).collect();
    let bytes = bin(7, &tokens);

    let tok = Tokenizer::from_llama2c(&bytes, VOCAB_SIZE).unwrap();
    let runc = RunC::load(&bytes, VOCAB_SIZE);
    assert_eq!(tok.vocab_size(), VOCAB_SIZE);
    assert_eq!(tok.token_to_piece(300), None);
    assert_eq!(tok.decode(&[300, 301]).unwrap(), "");
    for text in corpus(&val).iter().take(100) {
        assert_eq!(tok.encode(text).unwrap(), runc.encode(text), "text: {text:?}");
    }
}

// ---- bad input: a clear error, never a panic ----

/// tokenizer.bin bytes: max_token_length, then (score, len, piece) per entry.
fn bin(max_token_length: i32, tokens: &[(f32, i32, &[u8])]) -> Vec<u8> {
    let mut bytes = max_token_length.to_le_bytes().to_vec();
    for &(score, len, piece) in tokens {
        bytes.extend(score.to_le_bytes());
        bytes.extend(len.to_le_bytes());
        bytes.extend(piece);
    }
    bytes
}

fn llama2c_error(bytes: &[u8], vocab_size: usize) -> String {
    match Tokenizer::from_llama2c(bytes, vocab_size) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

fn assert_contains(message: String, word: &str) {
    assert!(message.contains(word), "{message:?} should mention {word:?}");
}

#[test]
fn empty_file() {
    assert_contains(llama2c_error(&[], VOCAB_SIZE), "empty");
}

#[test]
fn truncated_header() {
    assert_contains(llama2c_error(&[7, 0], VOCAB_SIZE), "truncated");
}

#[test]
fn truncated_inside_a_token() {
    let mut bytes = bin(7, &[(0.0, 5, b"<unk>")]);
    bytes.extend(1.5f32.to_le_bytes()); // score of token 1, then the file ends
    assert_contains(llama2c_error(&bytes, VOCAB_SIZE), "truncated at token 1 of 512");
}

#[test]
fn negative_length() {
    let bytes = bin(7, &[(0.0, -5, b"")]);
    assert_contains(llama2c_error(&bytes, VOCAB_SIZE), "length -5");
}

#[test]
fn length_above_max_token_length() {
    let bytes = bin(3, &[(0.0, 5, b"<unk>")]);
    assert_contains(llama2c_error(&bytes, VOCAB_SIZE), "max_token_length");
}

#[test]
fn length_above_remaining_bytes() {
    let bytes = bin(1000, &[(0.0, 900, b"abc")]);
    assert_contains(llama2c_error(&bytes, VOCAB_SIZE), "only 3 remain");
}

#[test]
#[cfg_attr(not(has_shared), ignore = "needs ../shared (the shared fixtures)")]
fn vocab_size_zero() {
    let (bin, _) = fixtures();
    assert_contains(llama2c_error(&bin, 0), "vocab_size is 0");
}

#[test]
fn piece_not_utf8() {
    let bytes = bin(7, &[(0.0, 2, &[0xC3, 0x28])]);
    assert_contains(llama2c_error(&bytes, VOCAB_SIZE), "UTF-8");
}

#[test]
#[cfg_attr(not(has_shared), ignore = "needs ../shared (the shared fixtures)")]
fn vocab_size_smaller_than_file() {
    let (bin, _) = fixtures();
    assert_contains(llama2c_error(&bin, 300), "after its 300 tokens");
}

#[test]
fn missing_byte_pieces() {
    // A well-formed file whose ids 3..=258 are not <0x00>..<0xFF>.
    let tokens: Vec<(f32, i32, &[u8])> = (0..VOCAB_SIZE).map(|_| (0.0, 1, &b"x"[..])).collect();
    assert_contains(llama2c_error(&bin(7, &tokens), VOCAB_SIZE), "<0x00>");
}

#[test]
fn json_that_is_not_json() {
    match Tokenizer::from_json(b"this is not json {") {
        Ok(_) => panic!("expected an error"),
        Err(e) => assert_contains(e.to_string(), "tokenizer.json"),
    }
}

/// A small tokenizer.json (byte-level BPE) with the given decoder, normalizer,
/// padding and truncation (JSON text each).
fn tiny_json(decoder: &str, normalizer: &str, padding: &str, truncation: &str) -> String {
    format!(
        r#"{{"version":"1.0","truncation":{truncation},"padding":{padding},"added_tokens":[],
        "normalizer":{normalizer},"pre_tokenizer":{{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true}},
        "post_processor":null,"decoder":{decoder},
        "model":{{"type":"BPE","dropout":null,"unk_token":null,"continuing_subword_prefix":null,"end_of_word_suffix":null,
        "fuse_unk":false,"byte_fallback":false,"vocab":{{"h":0,"i":1,"hi":2,"Ġ":3}},"merges":[["h","i"]]}}}}"#
    )
}

const BYTE_LEVEL: &str = r#"{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true}"#;

fn json_error(json: &str) -> String {
    match Tokenizer::from_json(json.as_bytes()) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

/// tokenizer.json files on which the `tokenizers` crate panics or allocates without
/// bound (found by examples/fuzz_loaders.rs): an error, or they load and work.
#[test]
fn json_that_tokenizers_panics_on() {
    let good = tiny_json(BYTE_LEVEL, "null", "null", "null");
    let tok = Tokenizer::from_json(good.as_bytes()).unwrap();
    assert_eq!(tok.decode(&tok.encode("hi hi").unwrap()).unwrap(), "hi hi");

    // Cut inside the decoder: the crate's decoder parser panics on the syntax error.
    let cut = &good[..good.rfind(r#""add_prefix_space":true"#).unwrap() + 10];
    assert_contains(json_error(cut), "tokenizer.json cannot be read");

    // A Strip decoder that strips at the end panics on short text, e.g. no text.
    let strip = r#"{"type":"Strip","content":" ","start":0,"stop":1}"#;
    assert_contains(json_error(&tiny_json(strip, "null", "null", "null")), "Strip decoder");
    let sequence = format!(r#"{{"type":"Sequence","decoders":[{BYTE_LEVEL},{strip}]}}"#);
    assert_contains(json_error(&tiny_json(&sequence, "null", "null", "null")), "Strip decoder");
    // The crate reads a decoder of an unknown type by its fields: a Strip all the same.
    let unnamed = r#"{"type":"Unknown","content":" ","start":0,"stop":1}"#;
    assert_contains(json_error(&tiny_json(unnamed, "null", "null", "null")), "Strip decoder");

    // A Precompiled normalizer with data that is not a charsmap.
    let precompiled = r#"{"type":"Precompiled","precompiled_charsmap":"AAAA"}"#;
    assert_contains(json_error(&tiny_json(BYTE_LEVEL, precompiled, "null", "null")), "tokenizer.json cannot be read");
}

/// Padding and truncation in tokenizer.json are ignored: a prompt is encoded whole,
/// and a fixed padding of 2^40 tokens would allocate terabytes.
#[test]
fn json_padding_and_truncation_are_ignored() {
    let padding = r#"{"strategy":{"Fixed":1099511627776},"direction":"Right","pad_to_multiple_of":null,"pad_id":0,"pad_type_id":0,"pad_token":"h"}"#;
    let truncation = r#"{"direction":"Right","max_length":1,"strategy":"LongestFirst","stride":0}"#;
    let tok = Tokenizer::from_json(tiny_json(BYTE_LEVEL, "null", padding, truncation).as_bytes()).unwrap();
    let ids = tok.encode("hi hi").unwrap();
    assert_eq!(tok.decode(&ids).unwrap(), "hi hi");
    assert_eq!(ids.len(), 3, "{ids:?}");
}
