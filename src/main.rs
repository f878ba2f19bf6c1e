//! `gqa`: generate, convert, evaluate and benchmark Grouped-Query Attention
//! models from the command line. Native only; the page uses the same library.
//! The commands live in cli/, one file each; the parser and dispatch are here.

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
    command_line::main()
}

/// The parser and the dispatch to each command (cli/).
#[cfg(not(target_arch = "wasm32"))]
mod command_line {
    use std::process::ExitCode;

    use clap::{Parser, Subcommand};

    use crate::cli;

    #[derive(Parser)]
    #[command(
        name = "gqa",
        version,
        about = "See Grouped-Query Attention: run a Llama-style model with G key/value heads",
        long_about = "Run a Llama-style decoder with G key/value heads for its H query heads \
(MHA: G = H, GQA: 1 < G < H, MQA: G = 1). A model is converted to G by pooling the key/value \
projection heads of each group (GQA paper, Algorithm 4). Models: a Hugging Face folder \
(config.json, model.safetensors, tokenizer.json), a llama2.c checkpoint (.bin + tokenizer.bin) \
or a GGUF file (llama architecture; 4-, 5- and 8-bit block weights stay in their blocks)."
    )]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(Subcommand)]
    enum Command {
        /// Stream generated text to stdout; speed and KV-cache memory go to stderr.
        Generate(cli::generate::GenerateArgs),
        /// Chat with a model that has a chat template (ChatML: SmolLM2), a turn per line
        /// of stdin, the history kept; an empty line or end of input ends it.
        Chat(cli::chat::ChatArgs),
        /// Convert a model to G key/value heads and write a Hugging Face folder.
        Convert(cli::convert::ConvertArgs),
        /// Perplexity over a text file, optionally compared with the unconverted model.
        Eval(cli::eval::EvalArgs),
        /// Decode tokens/s for every G at several contexts, against this machine's memory bandwidth.
        Bench(cli::bench::BenchArgs),
        /// The GPU engine and sampler against the CPU's on one model, for every G and KV precision.
        CheckGpu(cli::check::CheckArgs),
        /// Train the model family: MHA base, converted and uptrained GQA variants, results table.
        #[cfg(feature = "train")]
        Train(cli::train::TrainArgs),
    }

    pub fn main() -> ExitCode {
        let args = Cli::parse();
        let result = match args.command {
            Command::Generate(a) => cli::generate::run(a),
            Command::Chat(a) => cli::chat::run(a),
            Command::Convert(a) => cli::convert::run(a),
            Command::Eval(a) => cli::eval::run(a),
            Command::Bench(a) => cli::bench::run(a),
            Command::CheckGpu(a) => cli::check::run(a),
            #[cfg(feature = "train")]
            Command::Train(a) => cli::train::run(a),
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    }
}
