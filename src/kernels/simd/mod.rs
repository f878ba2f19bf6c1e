//! The bottom layer of the CPU kernels: a small vector trait, [`Lanes`], one
//! implementation per instruction set, and the one place that picks among them.
//!
//! | module | vector | chosen |
//! |---|---|---|
//! | [`avx512`] | `__m512`, 16 lanes | at run time: AVX-512F + VNNI (unless `GQA_NO_AVX512` is set) |
//! | [`avx2`] | `__m256`, 8 lanes | at run time: AVX2 + FMA + F16C |
//! | [`simd128`] | two `v128`, 8 lanes | at compile time: wasm32 with `+simd128` |
//! | [`plain`] | `[f32; 8]` | everywhere else (and in the tests, as a reference path) |
//!
//! A kernel family writes its body once, generic over `V: Lanes`, as a
//! [`Kernel`]; [`dispatch`] runs it on the best instruction set of this machine.
//! This layer depends on nothing else in the crate.

#[cfg(target_arch = "x86_64")]
pub mod avx2;
#[cfg(target_arch = "x86_64")]
pub mod avx512;
mod elem;
mod lanes;
pub mod plain;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub mod simd128;

pub use elem::{f16_bits_to_f32, Elem};
pub use lanes::{Kernel, Lanes};

/// An instruction set the kernels can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Avx512,
    Avx2,
    Simd128,
    Plain,
}

impl Isa {
    /// The best one this machine (or this wasm build) has.
    #[inline(always)]
    pub fn best() -> Isa {
        #[cfg(target_arch = "x86_64")]
        return match x86_features() {
            X86 { avx512: true, .. } => Isa::Avx512,
            X86 { avx2: true, .. } => Isa::Avx2,
            _ => Isa::Plain,
        };
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        return Isa::Simd128;
        #[allow(unreachable_code)]
        Isa::Plain
    }

    /// Every instruction set this machine can run, best first (the tests run
    /// each kernel on all of them).
    pub fn all_available() -> Vec<Isa> {
        [Isa::Avx512, Isa::Avx2, Isa::Simd128, Isa::Plain].into_iter().filter(|isa| isa.available()).collect()
    }

    /// Whether this machine can run it.
    #[inline(always)]
    pub fn available(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => x86_features().avx512,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => x86_features().avx2,
            Isa::Simd128 => cfg!(all(target_arch = "wasm32", target_feature = "simd128")),
            Isa::Plain => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// What the kernels run on, in words (the CLI and the page show it).
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512f+vnni+avx2+fma+f16c",
            Isa::Avx2 => "avx2+fma+f16c",
            Isa::Simd128 if cfg!(target_feature = "relaxed-simd") => "wasm simd128 + relaxed-simd (fused multiply-add)",
            Isa::Simd128 => "wasm simd128",
            Isa::Plain => "scalar",
        }
    }
}

/// What this x86 CPU has, as the kernels group it.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct X86 {
    /// AVX-512F and AVX-512 VNNI (`vpdpbusd`, the int8 dot products), unless
    /// GQA_NO_AVX512 is set, to compare the two x86 paths.
    avx512: bool,
    /// AVX2 + FMA + F16C.
    avx2: bool,
}

/// The x86 features, detected once.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn x86_features() -> X86 {
    static FEATURES: std::sync::OnceLock<X86> = std::sync::OnceLock::new();
    *FEATURES.get_or_init(|| {
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c");
        let avx512 = is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vnni");
        X86 { avx512: avx512 && std::env::var_os("GQA_NO_AVX512").is_none(), avx2 }
    })
}

/// Run `kernel` on the best instruction set of this machine.
#[inline(always)]
pub fn dispatch<K: Kernel>(kernel: K) -> K::Output {
    run_on(Isa::best(), kernel)
}

/// Run `kernel` on `isa`, or on plain arrays where this machine lacks it. AVX-512
/// steps down to AVX2 for a call that 16 lanes do not suit.
#[inline(always)]
pub fn run_on<K: Kernel>(isa: Isa, kernel: K) -> K::Output {
    #[cfg(target_arch = "x86_64")]
    {
        let wide = isa == Isa::Avx512 && kernel.suits(16) && Isa::Avx512.available();
        if wide {
            // SAFETY: the CPU has AVX-512F and AVX-512 VNNI (checked).
            return unsafe { avx512::run(kernel) };
        }
        if matches!(isa, Isa::Avx512 | Isa::Avx2) && Isa::Avx2.available() {
            // SAFETY: the CPU has AVX2, FMA and F16C (checked).
            return unsafe { avx2::run(kernel) };
        }
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if isa == Isa::Simd128 {
        return kernel.run::<simd128::F32x8>();
    }
    let _ = isa;
    kernel.run::<[f32; 8]>()
}
