//! Decides, once per build, which tests this machine can run. A test that needs
//! something the machine lacks is compiled as `#[ignore]`d (with the reason), so
//! `cargo test` reports it as ignored, never as passed. The flags, for
//! `#[cfg_attr(not(flag), ignore = "...")]` in the tests:
//!
//! * `has_shared`: the shared fixtures are there (`../shared`, or `$GQA_SHARED_DIR`);
//! * `has_vulkan`: a Vulkan driver is installed (lavapipe runs the GPU tests on the CPU).
//!
//! It also sets `rayon_pool` where the kernels split work across rayon's threads:
//! natively always, and on wasm32 in the threaded module (feature `threads`).
//!
//! Under CI (`CI=true`) both are always set: nothing is ignored, and a test whose
//! requirement is missing runs and fails with a message naming it.
//!
//! The tests read the fixtures from `env!("GQA_SHARED_DIR")`, set here. Cargo reruns
//! this script when a watched file changes; after adding ../shared where it was
//! missing, `touch build.rs` (a missing folder is not watched).

use std::path::{Path, PathBuf};

/// The files of ../shared that the tests read.
const SHARED_FILES: [&str; 5] = [
    "fixtures/llama2c/stories260K.bin",
    "fixtures/llama2c/tok512.bin",
    "fixtures/llama2c/greedy_256.txt",
    "data/tinystories/val.txt",
    "models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf",
];

/// Where the Vulkan loader looks for driver manifests (ICDs) on Linux.
const ICD_DIRS: [&str; 3] = ["/usr/share/vulkan/icd.d", "/usr/local/share/vulkan/icd.d", "/etc/vulkan/icd.d"];

/// Environment variables that point the Vulkan loader at drivers directly.
const ICD_VARS: [&str; 2] = ["VK_ICD_FILENAMES", "VK_DRIVER_FILES"];

fn main() {
    println!("cargo::rustc-check-cfg=cfg(has_shared)");
    println!("cargo::rustc-check-cfg=cfg(has_vulkan)");
    println!("cargo::rustc-check-cfg=cfg(rayon_pool)");
    let wasm = std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|a| a == "wasm32");
    if !wasm || std::env::var_os("CARGO_FEATURE_THREADS").is_some() {
        println!("cargo::rustc-cfg=rayon_pool");
    }
    println!("cargo::rerun-if-changed=build.rs");
    for var in ["CI", "GQA_SHARED_DIR"].iter().chain(&ICD_VARS) {
        println!("cargo::rerun-if-env-changed={var}");
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");

    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    // A relative GQA_SHARED_DIR is relative to the repository root.
    let shared = manifest.join(std::env::var_os("GQA_SHARED_DIR").map_or_else(|| PathBuf::from("../shared"), PathBuf::from));
    println!("cargo::rustc-env=GQA_SHARED_DIR={}", shared.display());
    let files: Vec<PathBuf> = SHARED_FILES.iter().map(|f| shared.join(f)).collect();
    watch_existing(&files);
    if ci || files.iter().all(|f| f.is_file()) {
        println!("cargo::rustc-cfg=has_shared");
    }

    let icd_dirs: Vec<PathBuf> = ICD_DIRS.iter().map(PathBuf::from).collect();
    watch_existing(&icd_dirs);
    let icd_var = ICD_VARS.iter().any(|v| std::env::var_os(v).is_some());
    if ci || icd_var || icd_dirs.iter().any(|dir| holds_json(dir)) {
        println!("cargo::rustc-cfg=has_vulkan");
    }
}

/// Rerun when one of `paths` changes or goes away.
fn watch_existing(paths: &[PathBuf]) {
    for path in paths.iter().filter(|p| p.exists()) {
        println!("cargo::rerun-if-changed={}", path.display());
    }
}

/// Whether `dir` holds a `.json` file (a driver manifest).
fn holds_json(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|entries| entries.flatten().any(|e| e.path().extension().is_some_and(|x| x == "json")))
        .unwrap_or(false)
}
