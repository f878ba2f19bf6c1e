//! The tokenizer of a GGUF file (src/tokenizer/gguf.rs) against llama.cpp's own: the
//! ids of tests/fixtures/smollm2_tokenize.json were made by llama.cpp (node-llama-cpp
//! 3.21.1) from the SmolLM2 file, by the command the fixture records (see
//! scripts/tokenize-llamacpp.mjs), as was the chat template's rendering that the ChatML
//! formatter (src/tokenizer/chat.rs) must equal.

mod common;

use gqa::gguf::Gguf;
use gqa::tokenizer::chat::{chatml_prompt, ChatMessage};
use gqa::tokenizer::gguf::GgufTokenizer;
use serde_json::Value;

const SMOLLM2: &str = "models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/smollm2_tokenize.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn ids(value: &Value) -> Vec<u32> {
    value.as_array().unwrap().iter().map(|id| id.as_u64().unwrap() as u32).collect()
}

fn smollm2() -> Vec<u8> {
    std::fs::read(common::shared(SMOLLM2)).unwrap()
}

#[test]
#[cfg_attr(not(has_shared), ignore = "needs ../shared (the shared fixtures)")]
fn smollm2_tokenizes_as_llama_cpp_does_and_decodes_back() {
    let bytes = smollm2();
    let t = GgufTokenizer::from_gguf(&Gguf::read(&bytes).unwrap()).unwrap();
    assert_eq!((t.tokenizer.add_bos(), t.bos_id, &t.end_of_generation[..]), (false, Some(1), &[2, 0][..]));
    assert!(t.tokenizer.is_chatml());
    assert_eq!(t.tokenizer.vocab_size(), 49152);
    let fixture = fixture();
    let cases = fixture["tokens"].as_array().unwrap();
    assert!(cases.len() >= 20);
    let control = ["<|im_start|>", "<|im_end|>", "<|endoftext|>"];
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let got = t.tokenizer.encode(text).unwrap();
        assert_eq!(got, ids(&case["ids"]), "{text:?}");
        // Decoding leaves out control tokens and gives back every other byte.
        let plain = control.iter().fold(text.to_string(), |s, marker| s.replace(marker, ""));
        assert_eq!(t.tokenizer.decode(&got).unwrap(), plain, "{text:?}");
        assert_eq!(t.encode_prompt(text).unwrap(), got, "no BOS: add_bos_token is false");
    }
    let chat = &fixture["chat"];
    assert_eq!(t.tokenizer.encode(chat["text"].as_str().unwrap()).unwrap(), ids(&chat["ids"]));
}

#[test]
#[cfg_attr(not(has_shared), ignore = "needs ../shared (the shared fixtures)")]
fn chatml_prompt_is_what_smollm2s_template_renders() {
    let bytes = smollm2();
    let t = GgufTokenizer::from_gguf(&Gguf::read(&bytes).unwrap()).unwrap();
    let template = t.tokenizer.chat_template().expect("SmolLM2 has a chat template");
    assert!(template.contains("<|im_start|>") && template.contains("add_generation_prompt"), "ChatML: {template}");

    let fixture = fixture();
    let chat = &fixture["chat"];
    let messages: Vec<ChatMessage> = chat["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| ChatMessage::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect();
    let roles: Vec<&str> = messages.iter().map(|m| m.role.as_str()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"], "two turns after a system prompt");
    assert_eq!(chat["add_generation_prompt"], true);
    assert_eq!(chatml_prompt(&messages, true), chat["text"].as_str().unwrap());
}

#[test]
fn chatml_prompt_writes_each_turn_and_the_reply_start() {
    let messages = [
        ChatMessage::new("system", "Be brief."),
        ChatMessage::new("user", "Hi"),
        ChatMessage::new("assistant", "Hello!"),
        ChatMessage::new("user", "Bye"),
    ];
    let turns = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
                 <|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n";
    assert_eq!(chatml_prompt(&messages, false), turns);
    assert_eq!(chatml_prompt(&messages, true), format!("{turns}<|im_start|>assistant\n"));
    assert_eq!(chatml_prompt(&[], true), "<|im_start|>assistant\n");
}

/// The SmolLM2 file with the string value of metadata key `key` replaced by `value`.
/// The tensor data moves with it (the tokenizer does not read it); 32 more bytes at the
/// end keep every tensor inside the file.
fn with_string(bytes: &[u8], key: &str, value: &str) -> Vec<u8> {
    let mut entry = (key.len() as u64).to_le_bytes().to_vec();
    entry.extend(key.as_bytes());
    entry.extend(8u32.to_le_bytes());
    let at = bytes.windows(entry.len()).position(|w| w == entry).unwrap() + entry.len();
    let old_len = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
    let mut out = bytes[..at].to_vec();
    out.extend((value.len() as u64).to_le_bytes());
    out.extend(value.as_bytes());
    out.extend(&bytes[at + 8 + old_len..]);
    out.extend([0; 32]);
    out
}

#[test]
#[cfg_attr(not(has_shared), ignore = "needs ../shared (the shared fixtures)")]
fn an_unsupported_tokenizer_is_refused_in_words() {
    let bytes = smollm2();
    let error = |key: &str, value: &str| {
        let bytes = with_string(&bytes, key, value);
        GgufTokenizer::from_gguf(&Gguf::read(&bytes).unwrap()).unwrap_err().to_string()
    };
    let e = error("tokenizer.ggml.model", "llama");
    assert!(e.contains("the GGUF tokenizer model 'llama' is not supported (only 'gpt2', byte-level BPE)"), "{e}");
    let e = error("tokenizer.ggml.pre", "falcon");
    assert!(e.contains("the GGUF pre-tokenizer 'falcon' is not supported (supported: smollm, llama-bpe, qwen2, gpt-2)"), "{e}");
}

#[test]
#[cfg_attr(not(has_shared), ignore = "needs ../shared (the shared fixtures)")]
fn other_pre_tokenizers_split_as_their_regexes_do() {
    // The same vocabulary with another pre-tokenizer: only the split differs. (This
    // vocabulary has no merges of digits, so the rules for digits, which tell SmolLM
    // from GPT-2 and Qwen 2 from Llama 3, give the same ids here.)
    let bytes = smollm2();
    let fixture = fixture();
    for (pre, newlines) in [("smollm", &["\n\n", "\n"][..]), ("gpt-2", &["\n\n", "\n"]), ("qwen2", &["\n\n\n"]), ("llama-bpe", &["\n\n\n"])] {
        let bytes = with_string(&bytes, "tokenizer.ggml.pre", pre);
        let t = GgufTokenizer::from_gguf(&Gguf::read(&bytes).unwrap()).unwrap();
        let pieces: Vec<String> = t.tokenizer.encode("yes.\n\n\nno").unwrap().iter().map(|&id| t.tokenizer.decode(&[id]).unwrap()).collect();
        // GPT-2's '\s+(?!\S)' leaves a run's last character to the word after it (here
        // alone, as it is no space); Llama 3's and Qwen 2's '\s*[\r\n]+' takes the run.
        assert_eq!(pieces, [&["yes", "."][..], newlines, &["no"]].concat(), "{pre}");
        for case in fixture["tokens"].as_array().unwrap().iter().filter(|c| !c["text"].as_str().unwrap().contains("<|")) {
            let text = case["text"].as_str().unwrap();
            assert_eq!(t.tokenizer.decode(&t.tokenizer.encode(text).unwrap()).unwrap(), text, "{pre}: {text:?}");
        }
        // The file's add_bos_token (false) overrides Llama 3's default of adding BOS.
        assert!(!t.tokenizer.add_bos(), "{pre}");
    }
}
