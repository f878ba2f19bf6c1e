//! `gqa bench --json` reports what it measured consistently: every G dividing
//! H, bytes per token from the weights and the KV-cache formula. (Speed itself
//! is never asserted: it is measured by the benchmark, not tested.)

use std::process::Command;

use gqa::bench::preset;
use gqa::kv_cache_bytes;
use gqa::tensor::KvDType;

#[test]
fn bench_json_rows_follow_the_byte_formula() {
    let out = Command::new(env!("CARGO_BIN_EXE_gqa"))
        .args(["bench", "--preset", "tiny", "--contexts", "32,64", "--steps", "4", "--threads", "1", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let config = preset("tiny").unwrap();
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4 * 2); // G in {1, 2, 4, 8} x 2 contexts
    assert!(report["copy_gb_s"].as_f64().unwrap() > 0.0);
    assert_eq!(report["threads"], 1);
    for r in rows {
        let g = r["n_kv_heads"].as_u64().unwrap() as usize;
        let ctx = r["context"].as_u64().unwrap() as usize;
        // The timed steps run at positions ctx-4 .. ctx; bytes are counted at the middle.
        assert_eq!(r["kv_bytes_per_token"].as_u64().unwrap() as usize, kv_cache_bytes(&config, g, ctx - 2, KvDType::F32));
        let total = r["weight_bytes_per_token"].as_u64().unwrap() + r["kv_bytes_per_token"].as_u64().unwrap();
        assert_eq!(r["bytes_per_token"].as_u64().unwrap(), total);
        let label = r["label"].as_str().unwrap();
        assert_eq!(label, match g { 8 => "MHA", 1 => "MQA", _ => if g == 2 { "GQA-2" } else { "GQA-4" } });
        assert!(r["decode_tok_s"].as_f64().unwrap() > 0.0);
    }
    // Fewer KV heads, fewer weight bytes too (smaller wk/wv).
    let w = |g: u64| rows.iter().find(|r| r["n_kv_heads"] == g).unwrap()["weight_bytes_per_token"].as_u64().unwrap();
    assert!(w(1) < w(2) && w(2) < w(4) && w(4) < w(8));
}

/// With `--kv-dtype f16` the KV part of the bytes per token is counted at 2 bytes per element.
#[test]
fn bench_counts_f16_kv_bytes() {
    let out = Command::new(env!("CARGO_BIN_EXE_gqa"))
        .args(["bench", "--preset", "tiny", "--contexts", "32", "--groups", "2", "--steps", "4", "--rounds", "1", "--kv-dtype", "f16", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["kv_dtype"], "f16");
    let row = &report["rows"][0];
    assert_eq!(row["kv_bytes_per_token"].as_u64().unwrap() as usize, kv_cache_bytes(&preset("tiny").unwrap(), 2, 30, KvDType::F16));
    assert!(row["ms_per_token"].as_f64().unwrap() > 0.0);
}
