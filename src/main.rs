//! `gqa`: generate, convert, evaluate and benchmark Grouped-Query Attention
//! models from the command line. Native only; the page uses the same library.
//! The commands live in cli/, one file each.

#[cfg(not(target_arch = "wasm32"))]
mod cli;

#[cfg(target_arch = "wasm32")]
fn main() {}

// Training allocates many short-lived tensors; mimalloc makes it 2-3x faster.
#[cfg(feature = "train")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    cli::main()
}
