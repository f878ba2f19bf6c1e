//! Threads: split work only where it pays. Natively and in the threaded wasm
//! module (whose pool runs in Web Workers) rayon's pool runs the parallel
//! regions; the single-thread wasm module runs everything in order.

/// Runs `f`, which has parallel regions when `splits`, on one of the pool's
/// threads: its regions then pass work between the pool's threads, which stay
/// awake between regions. Called from outside the pool, each region would
/// instead put the caller to sleep and wake it again. A pass without regions
/// stays on the calling thread: moving it would cost a hand-off per token.
pub fn on_pool<R: Send>(splits: bool, f: impl FnOnce() -> R + Send) -> R {
    #[cfg(rayon_pool)]
    if splits && rayon::current_thread_index().is_none() {
        return rayon::scope(|_| f());
    }
    #[cfg(not(rayon_pool))]
    let _ = splits;
    f()
}

/// Threads available to the kernels: rayon's pool natively and in the threaded
/// wasm module (its Web Workers), 1 in the single-thread module.
pub fn threads() -> usize {
    #[cfg(rayon_pool)]
    return rayon::current_num_threads();
    #[cfg(not(rayon_pool))]
    1
}

/// Run `f(first_index, chunk)` over `out` split into chunks of `chunk` elements:
/// in parallel when `parallel` is true and there is a pool, in order otherwise.
pub fn for_chunks<F>(out: &mut [f32], chunk: usize, parallel: bool, f: F)
where
    F: Fn(usize, &mut [f32]) + Sync + Send,
{
    let chunk = chunk.max(1);
    #[cfg(rayon_pool)]
    if parallel {
        use rayon::prelude::*;
        out.par_chunks_mut(chunk).enumerate().for_each(|(i, c)| f(i * chunk, c));
        return;
    }
    #[cfg(not(rayon_pool))]
    let _ = parallel; // one thread
    for (i, c) in out.chunks_mut(chunk).enumerate() {
        f(i * chunk, c);
    }
}
