//! Without a usable GPU adapter, a GPU session falls back to the CPU engine and says
//! why. (Its own test binary: it hides the adapters with WGPU_BACKEND for the whole
//! process.)

mod common;

use common::{small_config, test_model};
use gqa::backend::BackendKind;
use gqa::backend::Logits;
use gqa::generation::GenerateParams;

#[test]
fn no_adapter_falls_back_to_cpu_and_says_why() {
    // Ask wgpu for a backend this build does not have (only Vulkan is compiled in).
    std::env::set_var("WGPU_BACKEND", "gl");
    let model = test_model(&small_config(2), 1);
    let (mut session, why) = gqa::session::Session::open(BackendKind::Gpu, model.clone(), None, Some(32), Default::default()).unwrap();
    let why = why.expect("a fallback reason");
    println!("{why}");
    assert!(why.contains("no GPU adapter") && why.contains("CPU"), "{why}");
    assert!(session.backend().name().starts_with("cpu"), "{}", session.backend().name());
    session.generate_ids(&[1], &GenerateParams { max_tokens: 4, sampler: Default::default() }, &mut |_| true).unwrap();
    assert!(session.stats().backend.starts_with("cpu"), "{}", session.stats().backend);
    let logits = session.backend().forward(&[2], Logits::Last).unwrap();
    assert_eq!(logits.len(), model.config.vocab_size);

    // Asking for the CPU never mentions the GPU.
    let (_, why) = gqa::session::Session::open(BackendKind::Cpu, model, None, Some(32), Default::default()).unwrap();
    assert!(why.is_none());
}
