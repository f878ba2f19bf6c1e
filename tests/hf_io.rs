//! Hugging Face checkpoints: round trips, BF16, and malformed config.json / safetensors.

mod common;

use std::time::{Duration, Instant};

use gqa::hf::{load_hf, load_hf_dir, save_hf_dir, to_safetensors};
use gqa::llama2c::load_llama2c;
use gqa::tensor::{DType, Data};
use gqa::{Config, GqaError, Model};
use half::{bf16, f16};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

/// dim 16, ffn 40, 2 layers, H = 4, G = 2 (hd 4), vocab 50.
fn small_config(tied: bool) -> Config {
    let mut c = Config::new(16, 40, 2, 4, 2, 50, 64);
    c.tie_word_embeddings = tied;
    c.validate().unwrap();
    c
}

fn random(tied: bool) -> Model {
    Model::random(&small_config(tied), 7, DType::F32).unwrap()
}

/// One tensor of a hand-built checkpoint.
struct Tensor {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

/// The model's tensors under their Hugging Face names (written out here, independently
/// of the library), in the given dtype (F32, F16 or BF16).
fn hf_tensors(m: &Model, dtype: Dtype) -> Vec<Tensor> {
    let encode = |values: &[f32]| -> Vec<u8> {
        match dtype {
            Dtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Dtype::F16 => values.iter().flat_map(|v| f16::from_f32(*v).to_le_bytes()).collect(),
            Dtype::BF16 => values.iter().flat_map(|v| bf16::from_f32(*v).to_le_bytes()).collect(),
            other => panic!("no encoding for {other}"),
        }
    };
    let mut out = Vec::new();
    let mut push = |name: String, shape: Vec<usize>, values: Vec<f32>| {
        out.push(Tensor { name, dtype, shape, bytes: encode(&values) })
    };
    let mat = |w: &gqa::tensor::Matrix| (vec![w.rows, w.cols], w.to_f32_vec());
    let (s, v) = mat(&m.embed);
    push("model.embed_tokens.weight".into(), s, v);
    for (i, b) in m.blocks.iter().enumerate() {
        let p = format!("model.layers.{i}");
        push(format!("{p}.input_layernorm.weight"), vec![b.input_norm.len()], b.input_norm.to_vec());
        push(
            format!("{p}.post_attention_layernorm.weight"),
            vec![b.post_attention_norm.len()],
            b.post_attention_norm.to_vec(),
        );
        for (name, w) in [
            ("self_attn.q_proj", &b.attn.wq),
            ("self_attn.k_proj", &b.attn.wk),
            ("self_attn.v_proj", &b.attn.wv),
            ("self_attn.o_proj", &b.attn.wo),
            ("mlp.gate_proj", &b.mlp.gate),
            ("mlp.up_proj", &b.mlp.up),
            ("mlp.down_proj", &b.mlp.down),
        ] {
            let (s, v) = mat(w);
            push(format!("{p}.{name}.weight"), s, v);
        }
    }
    push("model.norm.weight".into(), vec![m.norm.len()], m.norm.to_vec());
    if let Some(head) = &m.lm_head {
        let (s, v) = mat(head);
        push("lm_head.weight".into(), s, v);
    }
    out
}

fn serialize(tensors: &[Tensor]) -> Vec<u8> {
    let views = tensors
        .iter()
        .map(|t| (t.name.clone(), TensorView::new(t.dtype, t.shape.clone(), &t.bytes).unwrap()));
    safetensors::serialize(views, None).unwrap()
}

/// A raw safetensors file: length field, header JSON, data.
fn raw_file(header: &str, data: &[u8]) -> Vec<u8> {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header.as_bytes());
    bytes.extend(data);
    bytes
}

/// config.json with some fields changed.
fn config_json_with(config: &Config, changes: serde_json::Value) -> String {
    let mut value: serde_json::Value = serde_json::from_str(&config.to_json()).unwrap();
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            value.as_object_mut().unwrap().remove(k);
        } else {
            value[k] = v.clone();
        }
    }
    value.to_string()
}

fn safetensors_error(config: &str, bytes: &[u8]) -> String {
    match load_hf(config, bytes) {
        Err(GqaError::Safetensors(msg)) => msg,
        other => panic!("expected a Safetensors error, got {other:?}"),
    }
}

fn config_error(config: &str) -> String {
    match load_hf(config, &to_safetensors(&random(true), DType::F32).unwrap()) {
        Err(GqaError::Config(msg)) => msg,
        other => panic!("expected a Config error, got {other:?}"),
    }
}

// ---- round trips ----

#[test]
fn round_trip_f32_tied_and_untied() {
    for tied in [true, false] {
        let m = random(tied);
        let bytes = to_safetensors(&m, DType::F32).unwrap();
        let names = SafeTensors::deserialize(&bytes).unwrap().names().len();
        assert_eq!(names, 1 + 2 * 9 + 1 + usize::from(!tied));
        let loaded = load_hf(&m.config.to_json(), &bytes).unwrap();
        assert_eq!(loaded, m);
        assert_eq!(loaded.lm_head.is_none(), tied);
    }
}

#[test]
fn round_trip_f16_equals_model_rounded_to_f16() {
    for tied in [true, false] {
        let m = random(tied);
        let bytes = to_safetensors(&m, DType::F16).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        // Norms are written in the matrices' dtype, as Hugging Face does.
        assert_eq!(st.tensor("model.norm.weight").unwrap().dtype(), Dtype::F16);
        assert_eq!(st.tensor("model.layers.1.mlp.down_proj.weight").unwrap().dtype(), Dtype::F16);
        let loaded = load_hf(&m.config.to_json(), &bytes).unwrap();
        assert_eq!(loaded.dtype(), DType::F16);
        assert!(matches!(loaded.blocks[0].attn.wq.data, Data::F16(_)));
        assert_eq!(loaded, m.to_dtype(DType::F16));
    }
}

#[test]
fn f16_model_written_as_f32_loads_as_f32() {
    let m = Model::random(&small_config(false), 3, DType::F16).unwrap();
    let loaded = load_hf(&m.config.to_json(), &to_safetensors(&m, DType::F32).unwrap()).unwrap();
    assert_eq!(loaded.dtype(), DType::F32);
    assert_eq!(loaded, m.to_dtype(DType::F32));
}

#[test]
fn safetensors_has_pt_format_metadata() {
    let bytes = to_safetensors(&random(true), DType::F32).unwrap();
    let (_, metadata) = SafeTensors::read_metadata(&bytes).unwrap();
    let meta = metadata.metadata().as_ref().expect("__metadata__");
    assert_eq!(meta.get("format").map(String::as_str), Some("pt"));
}

#[test]
fn unaligned_bytes_load() {
    let m = random(false);
    let bytes = to_safetensors(&m, DType::F32).unwrap();
    let mut shifted = vec![0u8];
    shifted.extend(&bytes);
    assert_eq!(load_hf(&m.config.to_json(), &shifted[1..]).unwrap(), m);
}

#[test]
fn tied_config_ignores_lm_head_in_file() {
    let untied = random(false);
    let bytes = to_safetensors(&untied, DType::F32).unwrap();
    let mut expected = untied.clone();
    expected.config.tie_word_embeddings = true;
    expected.lm_head = None;
    let loaded = load_hf(&expected.config.to_json(), &bytes).unwrap();
    assert_eq!(loaded, expected);
}

#[test]
fn untied_config_without_lm_head_is_missing_tensor() {
    let tied = random(true);
    let bytes = to_safetensors(&tied, DType::F32).unwrap();
    match load_hf(&small_config(false).to_json(), &bytes) {
        Err(GqaError::MissingTensor(name)) => assert_eq!(name, "lm_head.weight"),
        other => panic!("expected MissingTensor, got {other:?}"),
    }
}

#[test]
#[cfg_attr(not(has_shared), ignore = "needs ../shared (the shared fixtures)")]
fn llama2c_fixture_round_trip() {
    let raw = std::fs::read(common::shared("fixtures/llama2c/stories260K.bin")).unwrap();
    let m = load_llama2c(&raw).unwrap();
    let bytes = to_safetensors(&m, DType::F32).unwrap();
    assert_eq!(load_hf(&m.config.to_json(), &bytes).unwrap(), m);
    // In f16 the matrices round exactly like Model::to_dtype.
    let loaded = load_hf(&m.config.to_json(), &to_safetensors(&m, DType::F16).unwrap()).unwrap();
    let expected = m.to_dtype(DType::F16);
    assert_eq!(loaded.embed, expected.embed);
    for (a, b) in loaded.blocks.iter().zip(&expected.blocks) {
        assert_eq!((&a.attn, &a.mlp), (&b.attn, &b.mlp));
    }
}

#[test]
fn hf_dir_round_trip_and_io_errors() {
    let dir = std::env::temp_dir().join(format!("gqa_hf_io_{}", std::process::id()));
    let m = random(false);
    save_hf_dir(&m, &dir.join("nested"), DType::F32).unwrap();
    assert_eq!(load_hf_dir(&dir.join("nested")).unwrap(), m);
    std::fs::remove_dir_all(&dir).unwrap();
    match load_hf_dir(&dir) {
        Err(GqaError::Io { path, .. }) => assert!(path.ends_with("config.json"), "{path}"),
        other => panic!("expected an Io error, got {other:?}"),
    }
}

// ---- BF16 and mixed dtypes ----

#[test]
fn bf16_tensors_load_as_f32() {
    let m = random(false);
    let bytes = serialize(&hf_tensors(&m, Dtype::BF16));
    let loaded = load_hf(&m.config.to_json(), &bytes).unwrap();
    assert_eq!(loaded.dtype(), DType::F32);
    let via_bf16 =
        |values: Vec<f32>| -> Vec<f32> { values.into_iter().map(|v| bf16::from_f32(v).to_f32()).collect() };
    assert_eq!(loaded.embed.data, Data::F32(via_bf16(m.embed.to_f32_vec()).into()));
    assert_eq!(loaded.lm_head.unwrap().data, Data::F32(via_bf16(m.lm_head.unwrap().to_f32_vec()).into()));
    for (a, b) in loaded.blocks.iter().zip(&m.blocks) {
        assert_eq!(a.attn.wk.data, Data::F32(via_bf16(b.attn.wk.to_f32_vec()).into()));
        assert_eq!(a.mlp.down.data, Data::F32(via_bf16(b.mlp.down.to_f32_vec()).into()));
        assert_eq!(*a.input_norm, via_bf16(b.input_norm.to_vec()));
    }
    // The values really went through bf16 (not all exactly representable).
    assert_ne!(loaded.embed.to_f32_vec(), m.embed.to_f32_vec());
}

#[test]
fn mixed_dtypes_load_as_f32() {
    let m = random(true);
    let mut tensors = hf_tensors(&m, Dtype::F16);
    let embed = tensors.iter_mut().find(|t| t.name == "model.embed_tokens.weight").unwrap();
    embed.dtype = Dtype::F32;
    embed.bytes = m.embed.to_f32_vec().iter().flat_map(|v| v.to_le_bytes()).collect();
    let loaded = load_hf(&m.config.to_json(), &serialize(&tensors)).unwrap();
    assert_eq!(loaded.embed, m.embed);
    assert_eq!(loaded.blocks[1].attn.wo, m.blocks[1].attn.wo.to_dtype(DType::F16).to_dtype(DType::F32));
}

// ---- bad safetensors ----

#[test]
fn truncated_safetensors() {
    let m = random(true);
    let bytes = to_safetensors(&m, DType::F32).unwrap();
    let msg = safetensors_error(&m.config.to_json(), &bytes[..bytes.len() - 10]);
    assert!(msg.contains("truncated"), "{msg}");
    // Cut inside the header, and inside the length field.
    assert!(safetensors_error(&m.config.to_json(), &bytes[..20]).contains("truncated"));
    assert!(safetensors_error(&m.config.to_json(), &bytes[..5]).contains("5 bytes"));
    assert!(safetensors_error(&m.config.to_json(), &[]).contains("0 bytes"));
}

#[test]
fn huge_header_length_field() {
    let config = small_config(true).to_json();
    for claimed in [u64::MAX, 1 << 40] {
        let mut bytes = claimed.to_le_bytes().to_vec();
        bytes.extend(b"{}");
        let msg = safetensors_error(&config, &bytes);
        assert!(msg.contains("header length") && msg.contains(&claimed.to_string()), "{msg}");
    }
    // Within the format's limit but larger than the file.
    let mut bytes = 1000u64.to_le_bytes().to_vec();
    bytes.extend(b"{}");
    let msg = safetensors_error(&config, &bytes);
    assert!(msg.contains("larger than the file"), "{msg}");
}

#[test]
fn data_offsets_past_the_end() {
    let header = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}"#;
    let msg = safetensors_error(&small_config(true).to_json(), &raw_file(header, &[0u8; 12]));
    assert!(msg.contains("past the end"), "{msg}");
}

#[test]
fn data_offsets_overlap() {
    let header = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#;
    let msg = safetensors_error(&small_config(true).to_json(), &raw_file(header, &[0u8; 12]));
    assert!(msg.contains("overlapping") && msg.contains("'b'"), "{msg}");
}

#[test]
fn data_offsets_disagree_with_shape() {
    let header = r#"{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}}"#;
    let msg = safetensors_error(&small_config(true).to_json(), &raw_file(header, &[0u8; 12]));
    assert!(msg.contains("shape and dtype"), "{msg}");
}

#[test]
fn header_not_json() {
    let msg = safetensors_error(&small_config(true).to_json(), &raw_file("{not json", &[]));
    assert!(msg.contains("JSON"), "{msg}");
}

#[test]
fn missing_tensor_is_named() {
    let m = random(false);
    let mut tensors = hf_tensors(&m, Dtype::F32);
    tensors.retain(|t| t.name != "model.layers.1.mlp.up_proj.weight");
    match load_hf(&m.config.to_json(), &serialize(&tensors)) {
        Err(e @ GqaError::MissingTensor(_)) => {
            assert!(e.to_string().contains("'model.layers.1.mlp.up_proj.weight'"), "{e}")
        }
        other => panic!("expected MissingTensor, got {other:?}"),
    }
}

#[test]
fn shape_disagreeing_with_config_names_the_tensor() {
    let m = random(true);
    let bytes = to_safetensors(&m, DType::F32).unwrap();
    let config = config_json_with(&m.config, serde_json::json!({ "intermediate_size": 48 }));
    match load_hf(&config, &bytes) {
        Err(e @ GqaError::ShapeMismatch { .. }) => {
            let GqaError::ShapeMismatch { name, expected, found } = &e else { unreachable!() };
            assert_eq!(name, "model.layers.0.mlp.gate_proj.weight");
            assert_eq!((expected.as_slice(), found.as_slice()), ([48, 16].as_slice(), [40, 16].as_slice()));
            assert!(e.to_string().contains("model.layers.0.mlp.gate_proj.weight"));
        }
        other => panic!("expected ShapeMismatch, got {other:?}"),
    }
    // A norm with the wrong shape (2-D instead of 1-D).
    let mut tensors = hf_tensors(&m, Dtype::F32);
    tensors.iter_mut().find(|t| t.name == "model.norm.weight").unwrap().shape = vec![1, 16];
    match load_hf(&m.config.to_json(), &serialize(&tensors)) {
        Err(GqaError::ShapeMismatch { name, .. }) => assert_eq!(name, "model.norm.weight"),
        other => panic!("expected ShapeMismatch, got {other:?}"),
    }
}

#[test]
fn unsupported_dtypes() {
    let m = random(true);
    for (dtype, factor) in [(Dtype::I32, 1), (Dtype::F64, 2)] {
        let mut tensors = hf_tensors(&m, Dtype::F32);
        let t = tensors.iter_mut().find(|t| t.name == "model.layers.0.self_attn.v_proj.weight").unwrap();
        t.dtype = dtype;
        t.bytes = vec![0u8; t.bytes.len() * factor];
        match load_hf(&m.config.to_json(), &serialize(&tensors)) {
            Err(GqaError::UnsupportedDtype { name, dtype: found }) => {
                assert_eq!(name, "model.layers.0.self_attn.v_proj.weight");
                assert_eq!(found, dtype.to_string());
            }
            other => panic!("expected UnsupportedDtype for {dtype}, got {other:?}"),
        }
    }
}

// ---- bad config.json ----

#[test]
fn config_not_json() {
    config_error("this is not json");
}

#[test]
fn config_missing_hidden_size() {
    let msg =
        config_error(&config_json_with(&small_config(true), serde_json::json!({ "hidden_size": null })));
    assert!(msg.contains("hidden_size"), "{msg}");
}

#[test]
fn heads_not_divisible_by_kv_heads() {
    let config = config_json_with(&small_config(true), serde_json::json!({ "num_key_value_heads": 3 }));
    match load_hf(&config, &[]) {
        Err(GqaError::HeadsNotDivisible { n_heads: 4, n_kv_heads: 3 }) => {}
        other => panic!("expected HeadsNotDivisible, got {other:?}"),
    }
}

#[test]
fn zero_sizes() {
    for field in ["num_hidden_layers", "vocab_size", "hidden_size", "intermediate_size"] {
        let msg = config_error(&config_json_with(&small_config(true), serde_json::json!({ field: 0 })));
        assert!(msg.contains(field) && msg.contains("is 0"), "{msg}");
    }
}

#[test]
fn absurd_sizes_fail_before_allocating() {
    let start = Instant::now();
    for changes in [
        serde_json::json!({ "hidden_size": 1_000_000_000u64, "num_attention_heads": 8, "num_key_value_heads": 8 }),
        serde_json::json!({ "num_hidden_layers": 1_000_000_000u64 }),
        serde_json::json!({ "vocab_size": 1u64 << 40 }),
        // Sizes whose parameter count overflows even u128 (found by examples/fuzz_loaders.rs).
        serde_json::json!({ "hidden_size": 1u64 << 63, "intermediate_size": 1u64 << 63, "num_attention_heads": 2,
                            "num_key_value_heads": 1 }),
    ] {
        let msg = config_error(&config_json_with(&small_config(true), changes));
        assert!(msg.contains("parameters"), "{msg}");
    }
    assert!(start.elapsed() < Duration::from_secs(1));
}
