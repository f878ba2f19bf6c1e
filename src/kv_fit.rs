//! Which KV cache fits in a given amount of memory, chosen before anything is allocated.
//!
//! The browser tab has the tightest memory (wasm32 addresses 4 GiB in all), and the page
//! lets the user turn any model into MHA: the KV cache of the largest G (H key/value
//! heads) is what must fit, and twice over, because while G changes the old engine's cache
//! and the new engine's are both alive. When the cache asked for does not fit, an f32
//! cache becomes f16 (the same positions in half the bytes); then the context is halved
//! until it fits. The choice comes with its reason, in words, for the page to show.

use crate::config::{kv_cache_bytes_u64, Config};
use crate::tensor::KvDType;

/// The fewest positions worth opening a model with.
pub const MIN_POSITIONS: usize = 64;

/// The KV cache a model opens with, and why it is not the one asked for (None: it is).
#[derive(Clone, Debug, PartialEq)]
pub struct KvFit {
    pub capacity: usize,
    pub dtype: KvDType,
    pub why: Option<String>,
}

/// Bytes the page may need for the cache of `positions` in `dtype`: MHA's cache, twice
/// (see the module doc).
pub fn bytes_needed(config: &Config, positions: usize, dtype: KvDType) -> u64 {
    kv_cache_bytes_u64(config, config.n_heads(), positions, dtype).map_or(u64::MAX, |b| b.saturating_mul(2))
}

/// The cache for `capacity` positions in `dtype`, or the nearest one that fits in `room`
/// bytes (f16 for f32, then half the positions, down to [`MIN_POSITIONS`]); an error in
/// words when even that does not fit.
pub fn fit(config: &Config, capacity: usize, dtype: KvDType, room: u64) -> Result<KvFit, String> {
    let fits = |positions, dtype| bytes_needed(config, positions, dtype) <= room;
    if fits(capacity, dtype) {
        return Ok(KvFit { capacity, dtype, why: None });
    }
    let mib = |b: u64| b >> 20;
    let asked = format!(
        "an {} cache of {capacity} positions takes {} MiB at MHA (G = {}), twice that while G changes, and this tab has {} MiB free",
        dtype.name(),
        mib(bytes_needed(config, capacity, dtype) / 2),
        config.n_heads(),
        mib(room)
    );
    let dtype = if dtype == KvDType::F32 { KvDType::F16 } else { dtype };
    if fits(capacity, dtype) {
        return Ok(KvFit { capacity, dtype, why: Some(format!("{asked}: f16 holds the same positions in half the bytes")) });
    }
    let mut positions = capacity / 2;
    while positions >= MIN_POSITIONS {
        if fits(positions, dtype) {
            let why = format!("{asked}: {positions} positions in {} fit", dtype.name());
            return Ok(KvFit { capacity: positions, dtype, why: Some(why) });
        }
        positions /= 2;
    }
    Err(format!("this model does not fit in this tab's memory: {asked}, and even {MIN_POSITIONS} positions in {} do not fit", dtype.name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SmolLM2-135M's shape: 30 layers, H = 9 of head size 64, G = 3, 8192 positions.
    fn smollm2() -> Config {
        Config::new(576, 1536, 30, 9, 3, 49152, 8192)
    }

    // MHA's f32 cache at 8192 positions, by hand: keys and values x 30 layers x 9 heads
    // x 64 x 4 bytes x 8192 = 1,132,462,080 bytes (1080 MiB; f16: 540 MiB).
    const MHA_F32_8192: u64 = 2 * 30 * 9 * 64 * 4 * 8192;

    #[test]
    fn the_cache_asked_for_when_twice_mha_fits() {
        assert_eq!(bytes_needed(&smollm2(), 8192, KvDType::F32), 2 * MHA_F32_8192);
        let fit = fit(&smollm2(), 8192, KvDType::F32, 2 * MHA_F32_8192).unwrap();
        assert_eq!(fit, KvFit { capacity: 8192, dtype: KvDType::F32, why: None });
    }

    #[test]
    fn f16_before_a_shorter_context() {
        let fit = fit(&smollm2(), 8192, KvDType::F32, 2 * MHA_F32_8192 - 1).unwrap();
        assert_eq!((fit.capacity, fit.dtype), (8192, KvDType::F16));
        let why = fit.why.unwrap();
        assert!(why.contains("f32 cache of 8192 positions takes 1080 MiB at MHA (G = 9)") && why.contains("f16"), "{why}");
    }

    #[test]
    fn then_half_the_positions_until_it_fits() {
        // f16 MHA at 8192 positions needs 2 x 540 MiB: not in 600 MiB; 4096 positions do.
        let fit = fit(&smollm2(), 8192, KvDType::F32, 600 << 20).unwrap();
        assert_eq!((fit.capacity, fit.dtype), (4096, KvDType::F16));
        assert!(fit.why.unwrap().contains("4096 positions in f16 fit"));
        // An int8 cache stays int8 (it is already smaller than f16).
        let fit = super::fit(&smollm2(), 8192, KvDType::I8, 300 << 20).unwrap();
        assert_eq!(fit.dtype, KvDType::I8);
        assert!(fit.capacity < 8192 && bytes_needed(&smollm2(), fit.capacity, KvDType::I8) <= 300 << 20);
    }

    #[test]
    fn an_error_in_words_when_nothing_fits() {
        let err = fit(&smollm2(), 8192, KvDType::F16, 1 << 20).unwrap_err();
        assert!(err.contains("does not fit in this tab's memory") && err.contains("64 positions"), "{err}");
    }
}
