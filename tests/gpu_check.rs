//! scripts/gpu-check.sh, the prepared real-GPU check, run as on a GPU machine but on
//! the Vulkan driver here (lavapipe) with `--quick`, on this build's `gqa`: it must pass,
//! and its JSON must hold what the GPU run is for (each case's profile, the checks).

use std::process::Command;

#[test]
#[cfg_attr(
    not(all(has_vulkan, has_shared)),
    ignore = "needs a Vulkan driver (mesa-vulkan-drivers: lavapipe) and ../shared (the shared fixtures)"
)]
fn gpu_check_script_passes_on_lavapipe() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::env::temp_dir().join(format!("gqa-gpu-check-{}", std::process::id()));
    let status = Command::new("bash")
        .current_dir(root)
        .args(["scripts/gpu-check.sh", "--quick", "--gqa", env!("CARGO_BIN_EXE_gqa"), "--out"])
        .arg(&out)
        .status()
        .expect("bash runs");
    let md = std::fs::read_to_string(out.join("gpu-check.md")).expect("the Markdown report");
    assert!(status.success(), "gpu-check.sh failed:\n{md}");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("gpu-check.json")).unwrap()).expect("valid JSON");

    // The preset's bench: every G at both contexts, each with its GPU profile.
    let bench = &json["bench_tiny"];
    assert_eq!(bench["kv_dtype"], "f16", "the GPU's KV cache is f16 by default");
    let rows = bench["gpu"]["rows"].as_array().expect("profile rows");
    assert_eq!(rows.len(), 8, "4 G x 2 contexts");
    assert!(bench["gpu"]["copy_gb_s"].as_f64().unwrap() > 0.0);
    assert!(bench["gpu"]["adapter"]["name"].as_str().unwrap().len() > 1);
    for r in rows {
        // Greedy and sampled steps read back at most 64 bytes each.
        assert!(r["read_back_bytes_per_token"].as_f64().unwrap() <= 64.0, "{r}");
        assert!((1..=64).contains(&r["sampled_read_back_bytes"].as_u64().unwrap()), "{r}");
        assert!(r["empty_forward_ms"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["fraction_of_copy"].as_f64().unwrap() > 0.0, "{r}");
        // lavapipe has timestamp queries: every case has its kernels timed.
        let kernels: Vec<&str> = r["kernels"].as_array().unwrap().iter().map(|k| k["kernel"].as_str().unwrap()).collect();
        for k in ["attention", "attention_merge", "rms_norm", "argmax"] {
            assert!(kernels.contains(&k), "{k} missing from {kernels:?}");
        }
    }
    // The checks: a random model past 4096 positions, and stories260K.
    for name in ["check_random", "check_stories260k"] {
        assert_eq!(json[name]["pass"], true, "{name}: {}", json[name]);
        assert!(json[name]["sampling"]["draws"].as_u64().unwrap() > 0);
    }
    let random = json["check_random"]["rows"].as_array().unwrap();
    assert_eq!(random.len(), 12, "G in 1, 2, 4, 8, for f32, f16 and int8 KV");
    assert!(random.iter().all(|r| r["filled"] == 5000));
    assert!(md.contains("GPU vs CPU: stories260K") && md.contains("ms/token (kernels)"), "{md}");
    std::fs::remove_dir_all(&out).ok();
}
