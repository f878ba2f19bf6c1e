//! The GGUF reader (src/gguf/read.rs) and the llama config (src/gguf/llama.rs): the real
//! SmolLM2 file's facts, this crate's export read back, and damaged files, each refused
//! with its own error (never a panic). The small files are written here field by field,
//! from the format's description, so that each test can damage one field.

mod common;

use gqa::convert::{convert, Method};
use gqa::gguf::{llama_config, to_gguf, Gguf, TensorType, Value};
use gqa::model::Model;
use gqa::tensor::DType;
use gqa::tokenizer::Tokenizer;

const SMOLLM2: &str = "models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";

#[test]
#[cfg_attr(not(has_shared), ignore = "needs ../shared (the shared fixtures)")]
fn smollm2_reads_with_its_config_tensors_and_tokenizer_metadata() {
    let bytes = std::fs::read(common::shared(SMOLLM2)).unwrap();
    let g = Gguf::read(&bytes).unwrap();
    assert_eq!((g.version, g.alignment), (3, 32));

    let c = llama_config(&g).unwrap();
    let sizes = (c.num_hidden_layers, c.hidden_size, c.n_heads(), c.n_kv_heads(), c.head_dim(), c.intermediate_size);
    assert_eq!(sizes, (30, 576, 9, 3, 64, 1536));
    assert_eq!((c.vocab_size, c.max_position_embeddings), (49152, 8192));
    assert_eq!((c.rope_theta, c.rms_norm_eps), (100000.0, 1e-5));
    assert!(c.tie_word_embeddings, "no output.weight: the embedding is the output head");
    assert_eq!((c.bos_token_id, c.eos_ids()), (1, vec![2]));

    let count = |ty: TensorType| g.tensors().iter().filter(|t| t.ty == ty).count();
    assert_eq!((count(TensorType::Q4_1), count(TensorType::Q8_0), count(TensorType::F32)), (210, 1, 61));
    assert_eq!(g.tensors().len(), 272);
    let embed = g.tensor("token_embd.weight").unwrap();
    assert_eq!((embed.ty, &embed.dims[..]), (TensorType::Q8_0, &[576, 49152][..]));
    assert_eq!(embed.bytes.len(), 576 * 49152 / 32 * 34, "Q8_0: 34 bytes per 32 weights");
    let k = g.tensor("blk.29.attn_k.weight").unwrap();
    assert_eq!((k.ty, &k.dims[..], k.bytes.len()), (TensorType::Q4_1, &[576, 192][..], 576 * 192 / 32 * 20));
    let norm = g.tensor("output_norm.weight").unwrap();
    let norm: Vec<f32> = norm.bytes.chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    assert!(norm.len() == 576 && norm.iter().all(|w| w.is_finite() && *w != 0.0), "RMS norm weights");
    assert!(g.tensor("output.weight").is_err());
    // The tensors tile the data section in order, none overlapping, the last ending at the file's end.
    let mut spans: Vec<_> = g.tensors().iter().map(|t| (t.offset, t.offset + t.bytes.len())).collect();
    spans.sort();
    assert!(spans.windows(2).all(|w| w[0].1 <= w[1].0));
    assert_eq!(embed.bytes.as_ptr_range().start as usize - bytes.as_ptr() as usize, 1785664usize.next_multiple_of(32));
    assert_eq!(spans.last().unwrap().1 + 1785664usize.next_multiple_of(32), bytes.len());

    assert_eq!((g.str("tokenizer.ggml.model").unwrap(), g.str("tokenizer.ggml.pre").unwrap()), ("gpt2", "smollm"));
    let tokens = g.strings("tokenizer.ggml.tokens").unwrap();
    assert_eq!(tokens[..3], ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]);
    let types = g.i32s("tokenizer.ggml.token_type").unwrap();
    assert!(types[..17].iter().all(|&t| t == 3) && types[17..].iter().all(|&t| t == 1), "ids 0-16 are control tokens");
    assert_eq!(g.strings("tokenizer.ggml.merges").unwrap().len(), 48900);
    assert!(!g.bool("tokenizer.ggml.add_bos_token").unwrap());
    assert!(g.str("tokenizer.chat_template").unwrap().contains("<|im_start|>"));
    let languages = g.array("general.languages").unwrap();
    assert_eq!(languages.iter().collect::<Vec<_>>(), [Value::Str("en")]);
    assert_eq!(g.metadata().count(), 33);
}

/// A random model with the shipped tokenizer's vocabulary, H = 8 converted to `groups`.
fn model(groups: usize, tied: bool) -> Model {
    let mut config = common::small_config(8);
    config.vocab_size = 2048;
    config.tie_word_embeddings = tied;
    convert(&Model::random(&config, 5, DType::F32).unwrap(), groups, Method::Mean, 0).unwrap()
}

#[test]
fn an_export_reads_back_with_its_config_and_tensor_bytes() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/www/models/mha/tokenizer.json");
    let tokenizer = Tokenizer::from_json(&std::fs::read(path).unwrap()).unwrap();
    for (groups, tied, dtype) in [(2, true, DType::F32), (1, false, DType::F16), (8, false, DType::F32)] {
        let m = model(groups, tied);
        let bytes = to_gguf(&m, &tokenizer, dtype, "round trip").unwrap();
        let g = Gguf::read(&bytes).unwrap();
        assert_eq!(llama_config(&g).unwrap(), m.config, "G = {groups}, tied {tied}, {dtype:?}");
        let expected = |values: Vec<f32>, dtype: DType| -> Vec<u8> {
            match dtype {
                DType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                DType::F16 => values.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect(),
            }
        };
        let b = &m.blocks[1];
        for (name, values) in [("token_embd.weight", m.embed.to_f32_vec()), ("blk.1.attn_v.weight", b.attn.wv.to_f32_vec())] {
            assert_eq!(g.tensor(name).unwrap().bytes, expected(values, dtype), "{name}");
        }
        assert_eq!(g.tensor("blk.1.ffn_norm.weight").unwrap().bytes, expected(b.post_attention_norm.to_vec(), DType::F32));
        let head = g.tensor("output.weight");
        assert_eq!(head.is_ok(), !tied);
        if let (Ok(head), Some(lm_head)) = (head, &m.lm_head) {
            assert_eq!(head.bytes, expected(lm_head.to_f32_vec(), dtype));
        }
        let ty = if dtype == DType::F16 { TensorType::F16 } else { TensorType::F32 };
        assert_eq!(g.tensor("blk.0.attn_q.weight").unwrap().ty, ty);
    }
}

/// A GGUF file as its fields, written out by [`File::bytes`].
#[derive(Clone)]
struct File {
    magic: [u8; 4],
    version: u32,
    /// Key, value type, value bytes.
    metadata: Vec<(String, u32, Vec<u8>)>,
    /// Name, dims, tensor type, offset.
    tensors: Vec<(String, Vec<u64>, u32, u64)>,
    /// Where the data section starts: the next multiple of this after the infos.
    alignment: usize,
    data: Vec<u8>,
}

fn string(s: &str) -> Vec<u8> {
    let mut out = (s.len() as u64).to_le_bytes().to_vec();
    out.extend(s.as_bytes());
    out
}

/// An array value: element type, count, the elements' bytes.
fn array(element_type: u32, elements: &[Vec<u8>]) -> Vec<u8> {
    let mut out = element_type.to_le_bytes().to_vec();
    out.extend((elements.len() as u64).to_le_bytes());
    elements.iter().for_each(|e| out.extend(e));
    out
}

impl File {
    fn bytes(&self) -> Vec<u8> {
        let mut out = self.magic.to_vec();
        out.extend(self.version.to_le_bytes());
        out.extend((self.tensors.len() as u64).to_le_bytes());
        out.extend((self.metadata.len() as u64).to_le_bytes());
        for (key, ty, value) in &self.metadata {
            out.extend(string(key));
            out.extend(ty.to_le_bytes());
            out.extend(value);
        }
        for (name, dims, ty, offset) in &self.tensors {
            out.extend(string(name));
            out.extend((dims.len() as u32).to_le_bytes());
            dims.iter().for_each(|d| out.extend(d.to_le_bytes()));
            out.extend(ty.to_le_bytes());
            out.extend(offset.to_le_bytes());
        }
        out.resize(out.len().next_multiple_of(self.alignment), 0);
        out.extend(&self.data);
        out
    }

    fn set(&mut self, key: &str, ty: u32, value: Vec<u8>) -> &mut File {
        self.metadata.retain(|(k, _, _)| k != key);
        self.metadata.push((key.into(), ty, value));
        self
    }
}

/// Every value type (nested arrays too), an F32 tensor [4, 2] and a Q4_1 tensor [32, 2].
fn every_value_type() -> File {
    let le = |bytes: &[u8]| bytes.to_vec();
    let metadata = vec![
        ("general.alignment", 4, le(&32u32.to_le_bytes())),
        ("u8", 0, le(&[200])),
        ("i8", 1, le(&(-5i8).to_le_bytes())),
        ("u16", 2, le(&60000u16.to_le_bytes())),
        ("i16", 3, le(&(-30000i16).to_le_bytes())),
        ("i32", 5, le(&(-7i32).to_le_bytes())),
        ("f32", 6, le(&1.5f32.to_le_bytes())),
        ("bool", 7, le(&[1])),
        ("string", 8, string("héllo")),
        ("u64", 10, le(&(1u64 << 40).to_le_bytes())),
        ("i64", 11, le(&(-1i64 << 40).to_le_bytes())),
        ("f64", 12, le(&0.25f64.to_le_bytes())),
        ("strings", 9, array(8, &[string("a"), string(""), string("b c")])),
        ("nested", 9, array(9, &[array(0, &[vec![1], vec![2]]), array(0, &[])])),
    ];
    File {
        magic: *b"GGUF",
        version: 3,
        metadata: metadata.into_iter().map(|(k, t, v)| (k.to_string(), t, v)).collect(),
        tensors: vec![("a".into(), vec![4, 2], 0, 0), ("b".into(), vec![32, 2], 3, 32)],
        alignment: 32,
        data: (0..32 + 2 * 20).map(|i| i as u8).collect(),
    }
}

#[test]
fn every_value_type_and_tensor_reads_back() {
    let bytes = every_value_type().bytes();
    let g = Gguf::read(&bytes).unwrap();
    let get = |key: &str| *g.get(key).unwrap();
    assert_eq!([get("u8"), get("i8"), get("u16"), get("i16")], [Value::U8(200), Value::I8(-5), Value::U16(60000), Value::I16(-30000)]);
    assert_eq!([get("i32"), get("u64"), get("i64")], [Value::I32(-7), Value::U64(1 << 40), Value::I64(-1 << 40)]);
    assert_eq!([get("f32"), get("f64"), get("bool"), get("string")], [Value::F32(1.5), Value::F64(0.25), Value::Bool(true), Value::Str("héllo")]);
    assert_eq!((g.uint("u16").unwrap(), g.float("f64").unwrap()), (60000, 0.25));
    assert_eq!(g.strings("strings").unwrap(), ["a", "", "b c"]);
    let nested: Vec<Vec<u64>> = g.array("nested").unwrap().iter().map(|inner| inner.as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect()).collect();
    assert_eq!(nested, [vec![1, 2], vec![]]);
    let keys: Vec<&str> = g.metadata().map(|(k, _)| k).collect();
    assert_eq!(keys[..3], ["general.alignment", "u8", "i8"], "file order");

    let (a, b) = (g.tensor("a").unwrap(), g.tensor("b").unwrap());
    assert_eq!((a.ty, &a.dims[..], a.offset, a.bytes), (TensorType::F32, &[4, 2][..], 0, &bytes[bytes.len() - 72..][..32]));
    assert_eq!((b.ty, &b.dims[..], b.offset, b.bytes), (TensorType::Q4_1, &[32, 2][..], 32, &bytes[bytes.len() - 40..]));

    // Typed access names the key and says what it found.
    let err = |e: gqa::GqaError| e.to_string();
    assert!(err(g.uint("i8").unwrap_err()).contains("metadata key 'i8' should be a non-negative integer, but it is I8(-5)"));
    assert!(err(g.str("u8").unwrap_err()).contains("'u8' should be a string"));
    assert!(err(g.strings("nested").unwrap_err()).contains("'nested' should be an array of strings, but it is an array of 2 Array values"));
    assert!(err(g.bool("absent").unwrap_err()).contains("metadata key 'absent' is missing"));
    assert!(err(g.tensor("c").unwrap_err()).contains("tensor 'c' is missing"));
}

/// `file`'s error, which must contain `expected`.
fn refused(file: &[u8], expected: &str) {
    match Gguf::read(file) {
        Ok(_) => panic!("a file that should fail with '{expected}' was read"),
        Err(e) => assert!(e.to_string().contains(expected), "expected '{expected}' in: {e}"),
    }
}

#[test]
fn every_truncation_is_refused() {
    let bytes = every_value_type().bytes();
    for len in 0..bytes.len() {
        let e = Gguf::read(&bytes[..len]).unwrap_err().to_string();
        let said = ["too few for a GGUF header", "the file ends at byte", "cannot fit in the", "is the file truncated?"];
        assert!(said.iter().any(|s| e.contains(s)), "cut at {len}: {e}");
    }
    refused(&bytes[..3], "the file has 3 bytes, too few for a GGUF header");
    refused(&bytes[..10], "in the header: the file ends at byte 10, but 8 bytes are needed from byte 8");
    refused(&bytes[..bytes.len() - 1], "tensor 'b' (Q4_1, dims [32, 2]) needs bytes 32..72 of the data section, which has 71 bytes");
}

#[test]
fn a_damaged_header_is_refused() {
    let mut f = every_value_type();
    f.magic = *b"GGML";
    refused(&f.bytes(), "not a GGUF file: it starts with \"GGML\"");
    for (version, said) in [(1, "version 1 is not supported"), (4, "version 4 is not supported"), (3 << 24, "(a big-endian file?)")] {
        let mut f = every_value_type();
        f.version = version;
        refused(&f.bytes(), said);
    }
    f = every_value_type();
    f.version = 2;
    assert!(Gguf::read(&f.bytes()).is_ok(), "version 2 reads like 3");

    // Counts that cannot fit in the file are refused before anything is allocated.
    for (at, count, said) in [(16, u64::MAX, "18446744073709551615 metadata entries cannot fit"), (8, 1 << 40, "1099511627776 tensor infos cannot fit")] {
        let mut bytes = every_value_type().bytes();
        bytes[at..at + 8].copy_from_slice(&u64::to_le_bytes(count));
        refused(&bytes, said);
    }
}

#[test]
fn damaged_metadata_is_refused() {
    let cases: [(&str, u32, Vec<u8>, &str); 8] = [
        ("huge array", 9, array(8, &[]).into_iter().take(4).chain(u64::MAX.to_le_bytes()).collect(), "in metadata key 'huge array': 18446744073709551615 array elements cannot fit"),
        ("huge string", 8, (1u64 << 60).to_le_bytes().to_vec(), "in metadata key 'huge string': the file ends at byte"),
        ("odd type", 13, vec![0; 4], "in metadata key 'odd type': value type 13 is not a GGUF value type"),
        ("odd elements", 9, array(77, &[]), "array element type 77 is not a GGUF value type"),
        ("bad bool", 7, vec![2], "a bool at byte"),
        ("bad utf8", 8, string("\u{e9}").into_iter().take(9).chain([0xFF]).collect(), "is not UTF-8"),
        ("deep", 9, (0..17).fold(array(0, &[]), |inner, _| array(9, &[inner])), "arrays are nested more than 16 deep"),
        ("general.alignment", 4, 48u32.to_le_bytes().to_vec(), "general.alignment must be a power of two up to 2^30, not U32(48)"),
    ];
    for (key, ty, value, said) in cases {
        refused(&every_value_type().set(key, ty, value).bytes(), said);
    }
    let mut f = every_value_type();
    f.metadata.push(("u8".into(), 0, vec![1]));
    refused(&f.bytes(), "metadata key 'u8' appears twice");
}

#[test]
fn damaged_tensor_infos_are_refused() {
    let damaged = |dims: &[u64], ty: u32, offset: u64, said: &str| {
        let mut f = every_value_type();
        f.tensors[1] = ("b".into(), dims.to_vec(), ty, offset);
        refused(&f.bytes(), said);
    };
    damaged(&[32, 2], 99, 32, "tensor 'b' has type id 99, which is not a ggml tensor type");
    damaged(&[32, 2], 7, 32, "tensor 'b' has type Q5_1, which this crate does not read");
    damaged(&[30, 2], 3, 32, "tensor 'b' (Q4_1) has rows of 30 elements, not a multiple of Q4_1's block of 32");
    damaged(&[1 << 32, 1 << 32, 2], 0, 32, "tensor 'b' has dims [4294967296, 4294967296, 2]: that many elements overflow 64 bits");
    damaged(&[1, 1, 1, 1, 1], 0, 32, "in the info of tensor 'b': 5 dimensions; ggml tensors have at most 4");
    damaged(&[32, 2], 3, 40, "tensor 'b' has offset 40, not a multiple of the alignment 32");
    damaged(&[32, 2], 3, 64, "tensor 'b' (Q4_1, dims [32, 2]) needs bytes 64..104 of the data section, which has 72 bytes");
    damaged(&[32, 2], 3, u64::MAX - 31, "needs bytes 18446744073709551584..18446744073709551624");
    damaged(&[32, 4], 3, 32, "needs bytes 32..112");

    let mut f = every_value_type();
    f.tensors[1].0 = "a".into();
    refused(&f.bytes(), "tensor 'a' appears twice");
    // The data section starts where general.alignment says, so a file padded otherwise
    // has its tensors elsewhere.
    f = every_value_type();
    f.set("general.alignment", 4, 64u32.to_le_bytes().to_vec());
    refused(&f.bytes(), "tensor 'b' has offset 32, not a multiple of the alignment 64");
}

/// The metadata `llama_config` reads, for a tiny model.
fn llama_file() -> File {
    let u32_value = |v: u32| v.to_le_bytes().to_vec();
    let mut f = every_value_type();
    f.set("general.architecture", 8, string("llama"))
        .set("llama.block_count", 4, u32_value(2))
        .set("llama.embedding_length", 4, u32_value(64))
        .set("llama.attention.head_count", 4, u32_value(8))
        .set("llama.attention.head_count_kv", 4, u32_value(2))
        .set("llama.feed_forward_length", 4, u32_value(96))
        .set("llama.context_length", 4, u32_value(256))
        .set("llama.rope.freq_base", 6, 500000f32.to_le_bytes().to_vec())
        .set("llama.attention.layer_norm_rms_epsilon", 6, 1e-6f32.to_le_bytes().to_vec())
        .set("tokenizer.ggml.tokens", 9, array(8, &(0..97).map(|i| string(&format!("t{i}"))).collect::<Vec<_>>()));
    f
}

#[test]
fn llama_config_reads_its_keys_and_names_what_is_wrong() {
    let bytes = llama_file().bytes();
    let c = llama_config(&Gguf::read(&bytes).unwrap()).unwrap();
    let mut expected = gqa::Config::new(64, 96, 2, 8, 2, 97, 256);
    (expected.rope_theta, expected.rms_norm_eps, expected.tie_word_embeddings) = (500000.0, 1e-6, true);
    assert_eq!(c, expected);

    let config_error = |f: &File| llama_config(&Gguf::read(&f.bytes()).unwrap()).unwrap_err().to_string();
    for key in ["llama.block_count", "llama.context_length", "llama.attention.layer_norm_rms_epsilon", "tokenizer.ggml.tokens"] {
        let mut f = llama_file();
        f.metadata.retain(|(k, _, _)| k != key);
        assert!(config_error(&f).contains(&format!("metadata key '{key}' is missing")), "{key}");
    }
    let e = config_error(llama_file().set("general.architecture", 8, string("qwen2")));
    assert!(e.contains("the model's architecture is 'qwen2'; only 'llama' is supported"), "{e}");
    let e = config_error(llama_file().set("llama.block_count", 8, string("2")));
    assert!(e.contains("metadata key 'llama.block_count' should be a non-negative integer, but it is a string"), "{e}");
    let e = config_error(llama_file().set("llama.attention.head_count_kv", 4, 3u32.to_le_bytes().to_vec()));
    assert!(e.contains("not divisible by num_key_value_heads (3)"), "{e}");
    let e = config_error(llama_file().set("llama.rope.dimension_count", 4, 4u32.to_le_bytes().to_vec()));
    assert!(e.contains("RoPE over only part of a head"), "{e}");
}
