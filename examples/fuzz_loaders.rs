//! Fuzzes the file loaders in process, on stable Rust: real files (and small ones made
//! here) are mutated (bit flips, interesting numbers, insertions, deletions,
//! truncations, splices) and fed to each loader under `catch_unwind`. A panic is a
//! crash, a case slower than the time limit a hang, and a counting allocator records
//! the largest single allocation of every case against a budget.
//!
//!   cargo run --example fuzz_loaders -- [--seconds 60] [--seed 1] [--only NAME] [--max-seed-bytes N]
//!
//! (The dev profile keeps overflow checks, so an arithmetic overflow is a crash too.)
//! Loaders (NAME): `hf` (config.json + model.safetensors), `llama2c` (a .bin
//! checkpoint), `tokenizer-bin` (llama2.c's tokenizer.bin), `tokenizer-json` and `gguf`
//! (a GGUF file: the reader, its every value and the whole model, quantized blocks
//! included) and `gguf-tokenizer` (the tokenizer in a GGUF file). The time is split by weight (parsing tokenizer.json is slow). A loaded
//! tokenizer also encodes, decodes and streams a short text. Prints one line per loader, then a
//! `test result` line; exits non-zero on any crash, hang or allocation over budget,
//! and writes those inputs to target/fuzz/.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gqa::config::Config;
use gqa::gguf::{llama_model, to_gguf, Gguf, Value};
use gqa::hf::{load_hf, to_safetensors};
use gqa::llama2c::load_llama2c;
use gqa::model::Model;
use gqa::rng::Rng;
use gqa::quant::Format;
use gqa::tensor::{DType, Matrix};
use gqa::tokenizer::gguf::GgufTokenizer;
use gqa::tokenizer::Tokenizer;

/// A case slower than this is a hang.
const CASE_LIMIT: Duration = Duration::from_secs(2);
/// A case still running after this never ends: the run stops (the watchdog).
const STUCK_LIMIT: Duration = Duration::from_secs(60);
/// The largest single allocation a case may make: 4x its input, and at least 16 MiB
/// (fixed-size tables, such as the BPE model's cache, take about 1 MiB).
fn budget(input_len: usize) -> usize {
    (4 * input_len).max(16 << 20)
}

/// The system allocator, recording the largest single allocation since the last reset
/// (by any thread: the loaders run on this one, but a library may use a thread pool).
struct Counting;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// One loader under test: its seed inputs (each one or more files) and how to run it.
struct Target {
    name: &'static str,
    /// Share of the time.
    weight: u32,
    /// Seeds, each with the odds of being picked (e.g. a large file rarely).
    seeds: Vec<(u32, Vec<Vec<u8>>)>,
    /// Loads (and uses) one input; whether it loaded.
    run: fn(&[Vec<u8>]) -> bool,
}

/// What one loader's run found.
#[derive(Default)]
struct Report {
    executions: u64,
    /// Inputs the loader accepted.
    loaded: u64,
    crashes: u64,
    hangs: u64,
    over_budget: u64,
    largest: usize,
    /// The input size at which `largest` happened.
    largest_input: usize,
    /// Each place that panicked ("file:line:column"), with its first message and count.
    crash_sites: BTreeMap<String, (String, u64)>,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let seconds: f64 = arg("--seconds").map_or(60.0, |s| s.parse().expect("--seconds takes a number"));
    let seed: u64 = arg("--seed").map_or(1, |s| s.parse().expect("--seed takes an integer"));
    let only = arg("--only");
    // A long run for many executions leaves the large real files out (one case of
    // SmolLM2's 94 MB takes as long as thousands of small ones).
    let max_seed: usize = arg("--max-seed-bytes").map_or(usize::MAX, |s| s.parse().expect("--max-seed-bytes takes an integer"));

    let mut targets: Vec<Target> = targets().into_iter().filter(|t| only.as_deref().is_none_or(|o| o == t.name)).collect();
    for t in &mut targets {
        t.seeds.retain(|(_, files)| files.iter().map(Vec::len).sum::<usize>() <= max_seed);
    }
    targets.retain(|t| !t.seeds.is_empty());
    assert!(!targets.is_empty(), "--only: no loader of that name (hf, llama2c, tokenizer-bin, tokenizer-json, gguf, gguf-tokenizer)");
    let total_weight: u32 = targets.iter().map(|t| t.weight).sum();

    // A panic is recorded, not printed: the report lists where each loader panicked.
    static PANIC: Mutex<Option<(String, String)>> = Mutex::new(None);
    std::panic::set_hook(Box::new(|info| {
        let site = info.location().map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column())).unwrap_or_default();
        let message = info.payload_as_str().unwrap_or("(no message)").to_string();
        *PANIC.lock().unwrap() = Some((site, message));
    }));

    start_watchdog();
    let mut failed = 0;
    let mut executions = 0;
    for target in &targets {
        let time = Duration::from_secs_f64(seconds * target.weight as f64 / total_weight as f64);
        // Each loader's cases depend only on the seed and its name, with or without --only.
        let name_hash = target.name.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
        let mut rng = Rng::new(seed ^ name_hash);
        let report = fuzz(target, time, &mut rng, &PANIC);
        let clean = report.crashes == 0 && report.hangs == 0 && report.over_budget == 0;
        failed += usize::from(!clean);
        executions += report.executions;
        println!(
            "{:<15} {:>10} executions ({} loaded), {} crashes, {} hangs, largest allocation {} (input {}), {} over budget",
            target.name,
            report.executions,
            report.loaded,
            report.crashes,
            report.hangs,
            human(report.largest),
            human(report.largest_input),
            report.over_budget,
        );
        for (site, (message, count)) in &report.crash_sites {
            println!("    {count} crashes at {site}: {message}");
        }
    }
    let _ = std::panic::take_hook();
    let passed = targets.len() - failed;
    let status = if failed == 0 { "ok" } else { "FAILED" };
    println!("fuzz test result: {status}. {passed} passed; {failed} failed ({executions} executions in {seconds} s)");
    std::process::exit(if failed == 0 { 0 } else { 1 });
}

/// Runs `target` on mutated seeds for `time`.
fn fuzz(target: &Target, time: Duration, rng: &mut Rng, panic: &Mutex<Option<(String, String)>>) -> Report {
    let mut report = Report::default();
    *RUNNING_LOADER.lock().unwrap() = target.name;
    let start = Instant::now();
    while start.elapsed() < time {
        let case = report.executions;
        let mut input = pick_seed(rng, &target.seeds).clone();
        let donor = &target.seeds[below(rng, target.seeds.len())].1;
        let part = below(rng, input.len());
        let donor = &donor[below(rng, donor.len())];
        mutate(rng, &mut input[part], donor);
        let input_len: usize = input.iter().map(Vec::len).sum();

        LARGEST.store(0, Ordering::Relaxed);
        let case_start = Instant::now();
        RUNNING_CASE.store(case + 1, Ordering::Relaxed);
        let outcome = catch_unwind(AssertUnwindSafe(|| (target.run)(&input)));
        RUNNING_CASE.store(0, Ordering::Relaxed);
        let elapsed = case_start.elapsed();
        let largest = LARGEST.load(Ordering::Relaxed);

        report.executions += 1;
        report.loaded += u64::from(matches!(outcome, Ok(true)));
        if largest > report.largest {
            report.largest = largest;
            report.largest_input = input_len;
        }
        let keep = |kind: &str| save(target.name, kind, case, &input);
        if outcome.is_err() {
            report.crashes += 1;
            let (site, message) = panic.lock().unwrap().take().unwrap_or_default();
            report.crash_sites.entry(site).or_insert((message, 0)).1 += 1;
            keep("crash");
        }
        if elapsed > CASE_LIMIT {
            report.hangs += 1;
            keep("hang");
        }
        if largest > budget(input_len) {
            report.over_budget += 1;
            keep("alloc");
        }
    }
    report
}

/// The loader running now, and 1 + the number of its running case (0 between cases).
static RUNNING_LOADER: Mutex<&str> = Mutex::new("");
static RUNNING_CASE: AtomicU64 = AtomicU64::new(0);

/// Ends the run when a case never returns (a loop that `CASE_LIMIT` cannot catch, as
/// it is checked after the case), naming the case: the same `--seed` and `--only`
/// replay the same cases.
fn start_watchdog() {
    std::thread::spawn(|| {
        let mut last = (0, Instant::now());
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let case = RUNNING_CASE.load(Ordering::Relaxed);
            if case != last.0 {
                last = (case, Instant::now());
            } else if case != 0 && last.1.elapsed() > STUCK_LIMIT {
                let loader = *RUNNING_LOADER.lock().unwrap();
                eprintln!("{loader}: case {} has run for {} s; stopping", case - 1, STUCK_LIMIT.as_secs());
                std::process::exit(2);
            }
        }
    });
}

/// A seed, picked with its odds.
fn pick_seed<'a>(rng: &mut Rng, seeds: &'a [(u32, Vec<Vec<u8>>)]) -> &'a Vec<Vec<u8>> {
    let total: u32 = seeds.iter().map(|(odds, _)| odds).sum();
    let mut ticket = below(rng, total as usize) as u32;
    for (odds, seed) in seeds {
        if ticket < *odds {
            return seed;
        }
        ticket -= odds;
    }
    unreachable!("the ticket is below the total odds")
}

/// Writes a failing input (each of its files) to target/fuzz/, for the first few.
fn save(loader: &str, kind: &str, case: u64, input: &[Vec<u8>]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz");
    if std::fs::create_dir_all(&dir).is_err() || std::fs::read_dir(&dir).map_or(0, |d| d.count()) > 100 {
        return;
    }
    for (i, file) in input.iter().enumerate() {
        let _ = std::fs::write(dir.join(format!("{loader}-{kind}-{case}-{i}")), file);
    }
}

// ---- the loaders ----

/// A text with words, punctuation, a special-token look-alike and non-ASCII characters.
const SAMPLE: &str = "Once upon a time, Lily saw <s> a café 🙂.\n";

/// What a front end does with a loaded tokenizer: encode, decode, stream.
fn use_tokenizer(tokenizer: &Tokenizer) {
    let Ok(ids) = tokenizer.encode(SAMPLE) else { return };
    let _ = tokenizer.decode(&ids);
    let (prompt, rest) = ids.split_at(ids.len() / 2);
    if let Ok(mut stream) = tokenizer.stream_after(prompt) {
        for &id in rest {
            let _ = stream.push(id);
        }
        let _ = stream.finish();
    }
}

/// What a front end does with a GGUF file: reads it, every metadata value (arrays
/// decoded, which must not fail once the file was read), its config and its tokenizer.
/// Whether all of them loaded.
fn use_gguf(bytes: &[u8]) -> bool {
    fn visit(value: &Value) -> usize {
        value.as_array().map_or(1, |array| array.iter().map(|v| visit(&v)).sum())
    }
    let Ok(gguf) = Gguf::read(bytes) else { return false };
    std::hint::black_box(gguf.metadata().map(|(_, value)| visit(value)).sum::<usize>());
    llama_model(&gguf).map(|model| std::hint::black_box(model.weight_bytes())).is_ok()
}

/// The tokenizer of a GGUF file, apart from the model: building it compiles the
/// pre-tokenizer's regexes, which takes a thousand times longer than reading the rest.
fn use_gguf_tokenizer(bytes: &[u8]) -> bool {
    let Ok(gguf) = Gguf::read(bytes) else { return false };
    GgufTokenizer::from_gguf(&gguf).map(|t| use_tokenizer(&t.tokenizer)).is_ok()
}

fn targets() -> Vec<Target> {
    let shared = |rel: &str| {
        let path = Path::new(env!("GQA_SHARED_DIR")).join(rel);
        let bytes = std::fs::read(&path).ok();
        if bytes.is_none() {
            eprintln!("note: {} is missing; fuzzing without that seed", path.display());
        }
        bytes
    };
    let repo = |rel: &str| std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).expect("a file of the repository");
    let tok512 = shared("fixtures/llama2c/tok512.bin");

    let mut hf = Vec::new();
    for (tied, dtype) in [(true, DType::F32), (false, DType::F16)] {
        let model = tiny_model(tied);
        hf.push((1, vec![model.config.to_json().into_bytes(), to_safetensors(&model, dtype).unwrap()]));
    }

    let mut llama2c = vec![(8, vec![tiny_llama2c(16)]), (8, vec![tiny_llama2c(-16)])];
    llama2c.extend(shared("fixtures/llama2c/stories260K.bin").map(|bin| (1, vec![bin])));

    let tokenizer_bin: Vec<_> = tok512.iter().map(|bin| (1, vec![bin.clone()])).collect();

    // Tiny exports (tied f32, untied f16) with the byte-level tokenizer, and rarely a real
    // model's file (its tokenizer: 49,152 tokens, 48,900 merges).
    let byte_level = Tokenizer::from_json(TINY_BYTE_LEVEL.as_bytes()).unwrap();
    let mut gguf: Vec<_> =
        [(true, DType::F32), (false, DType::F16)].map(|(tied, dtype)| (8, vec![to_gguf(&tiny_model(tied), &byte_level, dtype, "tiny").unwrap()])).into();
    gguf.push((8, vec![to_gguf(&tiny_quantized_model(), &byte_level, DType::F32, "tiny").unwrap()]));
    gguf.extend(shared("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf").map(|file| (1, vec![file])));

    let tiny_jsons = [TINY_BYTE_LEVEL, TINY_METASPACE, TINY_UNIGRAM, TINY_WORDPIECE];
    let mut tokenizer_json: Vec<_> = tiny_jsons.iter().map(|json| (8, vec![json.as_bytes().to_vec()])).collect();
    tokenizer_json.push((1, vec![repo("www/models/mha/tokenizer.json")]));
    if let Some(bin) = &tok512 {
        let json = Tokenizer::from_llama2c(bin, 512).unwrap().to_json().unwrap();
        tokenizer_json.push((2, vec![json.into_bytes()]));
    }

    let mut targets = vec![
        Target {
            name: "hf",
            weight: 3,
            seeds: hf,
            run: |input| load_hf(&String::from_utf8_lossy(&input[0]), &input[1]).is_ok(),
        },
        Target {
            name: "llama2c",
            weight: 3,
            seeds: llama2c,
            run: |input| load_llama2c(&input[0]).is_ok(),
        },
        Target {
            name: "tokenizer-bin",
            weight: 2,
            seeds: tokenizer_bin,
            run: |input| Tokenizer::from_llama2c(&input[0], 512).map(|t| use_tokenizer(&t)).is_ok(),
        },
        Target {
            name: "tokenizer-json",
            weight: 2,
            seeds: tokenizer_json,
            run: |input| Tokenizer::from_json(&input[0]).map(|t| use_tokenizer(&t)).is_ok(),
        },
        Target {
            name: "gguf",
            weight: 3,
            seeds: gguf.clone(),
            run: |input| use_gguf(&input[0]),
        },
        Target {
            name: "gguf-tokenizer",
            weight: 2,
            seeds: gguf,
            run: |input| use_gguf_tokenizer(&input[0]),
        },
    ];
    targets.retain(|t| !t.seeds.is_empty());
    for target in &targets {
        for (_, seed) in &target.seeds {
            assert!((target.run)(seed), "a {} seed does not load: fuzzing would start from garbage", target.name);
        }
    }
    targets
}

/// dim 8, ffn 16, 1 layer, H = 2, G = 1, vocab 16, context 8.
fn tiny_model(tied: bool) -> Model {
    let mut config = Config::new(8, 16, 1, 2, 1, 16, 8);
    config.tie_word_embeddings = tied;
    Model::random(&config, 7, DType::F32).unwrap()
}

/// dim 32, ffn 32, 1 layer, H = 2, G = 1, vocab 16, tied: the block matrices in Q4_1 and
/// the embedding in Q8_0, as SmolLM2's file has them (blocks of random codes).
fn tiny_quantized_model() -> Model {
    let mut config = Config::new(32, 32, 1, 2, 1, 16, 8);
    config.tie_word_embeddings = true;
    let mut model = Model::random(&config, 7, DType::F32).unwrap();
    let mut rng = Rng::new(3);
    let mut blocks = |m: &Matrix, format: Format| {
        let scale = half::f16::from_f32(0.01).to_le_bytes();
        let block = |rng: &mut Rng| -> Vec<u8> {
            let codes: Vec<u8> = (0..format.block_bytes() - 2).map(|_| below(rng, 256) as u8).collect();
            scale.into_iter().chain(codes).collect()
        };
        let bytes = (0..m.rows * m.cols / format.block_weights()).flat_map(|_| block(&mut rng)).collect();
        Matrix::quantized(m.rows, m.cols, format, bytes).unwrap()
    };
    model.embed = blocks(&model.embed, Format::Q8_0);
    for b in &mut model.blocks {
        for m in [&mut b.attn.wq, &mut b.attn.wk, &mut b.attn.wv, &mut b.attn.wo, &mut b.mlp.gate, &mut b.mlp.up, &mut b.mlp.down] {
            *m = blocks(m, Format::Q4_1);
        }
    }
    model
}

/// A llama2.c checkpoint with the same shape as `tiny_model`: the 7-field header,
/// then every float the format lists (random values). A negative `vocab` marks an
/// untied classifier at the end.
fn tiny_llama2c(vocab: i32) -> Vec<u8> {
    let (dim, ffn, layers, heads, kv_heads, seq) = (8, 16, 1, 2, 1, 8);
    let header = [dim, ffn, layers, heads, kv_heads, vocab, seq];
    let (d, f, l, v, hs) = (dim as usize, ffn as usize, layers as usize, vocab.unsigned_abs() as usize, (dim / heads) as usize);
    let kv = kv_heads as usize * hs;
    // rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3 per layer; freq_cis real and imaginary.
    let per_layer = d + d * d + 2 * kv * d + d * d + d + 3 * f * d;
    let classifier = if vocab < 0 { v * d } else { 0 };
    let floats = v * d + l * per_layer + d + seq as usize * hs + classifier;
    let mut rng = Rng::new(3);
    let mut bytes: Vec<u8> = header.iter().flat_map(|x| x.to_le_bytes()).collect();
    bytes.extend((0..floats).flat_map(|_| rng.normal().to_le_bytes()));
    bytes
}

/// A byte-level BPE (GPT-2 style) with special tokens, a few merges, truncation and padding.
const TINY_BYTE_LEVEL: &str = r#"{"version":"1.0",
"truncation":{"direction":"Right","max_length":8,"strategy":"LongestFirst","stride":0},
"padding":{"strategy":{"Fixed":16},"direction":"Right","pad_to_multiple_of":null,"pad_id":0,"pad_type_id":0,"pad_token":"<unk>"},
"added_tokens":[{"id":0,"content":"<unk>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true},
{"id":1,"content":"<s>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}],
"normalizer":null,
"pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true},
"post_processor":null,
"decoder":{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true},
"model":{"type":"BPE","dropout":null,"unk_token":null,"continuing_subword_prefix":null,"end_of_word_suffix":null,
"fuse_unk":false,"byte_fallback":false,"ignore_merges":false,
"vocab":{"<unk>":0,"<s>":1,"O":2,"n":3,"c":4,"e":5,"Ġ":6,"u":7,"p":8,"o":9,"On":10,"ce":11,"Ġu":12,"Once":13},
"merges":[["O","n"],["c","e"],["Ġ","u"],["On","ce"]]}}"#;

/// A SentencePiece-style tokenizer: Metaspace, byte fallback, and a decoder sequence.
const TINY_METASPACE: &str = r#"{"version":"1.0","truncation":null,"padding":null,
"added_tokens":[{"id":0,"content":"<unk>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}],
"normalizer":{"type":"Sequence","normalizers":[{"type":"Prepend","prepend":"▁"},{"type":"Replace","pattern":{"String":" "},"content":"▁"}]},
"pre_tokenizer":null,
"post_processor":null,
"decoder":{"type":"Sequence","decoders":[{"type":"Replace","pattern":{"String":"▁"},"content":" "},{"type":"ByteFallback"},{"type":"Fuse"},{"type":"Strip","content":" ","start":1,"stop":0}]},
"model":{"type":"BPE","dropout":null,"unk_token":"<unk>","continuing_subword_prefix":null,"end_of_word_suffix":null,
"fuse_unk":true,"byte_fallback":true,"ignore_merges":false,
"vocab":{"<unk>":0,"<0x41>":1,"<0xC3>":2,"<0xA9>":3,"▁":4,"a":5,"▁a":6,"t":7,"▁at":8},
"merges":[["▁","a"],["▁a","t"]]}}"#;

/// A Unigram model behind sequences of normalizers and pre-tokenizers, with a
/// template post-processor.
const TINY_UNIGRAM: &str = r#"{"version":"1.0","truncation":null,"padding":null,
"added_tokens":[{"id":0,"content":"<unk>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true},
{"id":1,"content":"<s>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}],
"normalizer":{"type":"Sequence","normalizers":[{"type":"NFKC"},{"type":"Lowercase"},{"type":"Replace","pattern":{"Regex":"\\s+"},"content":" "}]},
"pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Digits","individual_digits":true},{"type":"Punctuation","behavior":"Isolated"},
{"type":"Metaspace","replacement":"▁","prepend_scheme":"always","split":true}]},
"post_processor":{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<s>","type_id":0}},{"Sequence":{"id":"A","type_id":0}}],
"pair":[{"Sequence":{"id":"A","type_id":0}},{"Sequence":{"id":"B","type_id":1}}],"special_tokens":{"<s>":{"id":"<s>","ids":[1],"tokens":["<s>"]}}},
"decoder":{"type":"Metaspace","replacement":"▁","prepend_scheme":"always","split":true},
"model":{"type":"Unigram","unk_id":0,"byte_fallback":false,
"vocab":[["<unk>",0.0],["<s>",0.0],["▁",-2.0],["o",-3.0],["n",-3.0],["c",-3.0],["e",-3.0],["▁once",-1.0],["1",-3.0],[",",-3.0]]}}"#;

/// A WordPiece model (BERT style) with its pre-tokenizer and decoder.
const TINY_WORDPIECE: &str = r###"{"version":"1.0","truncation":null,"padding":null,
"added_tokens":[{"id":0,"content":"[UNK]","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}],
"normalizer":{"type":"BertNormalizer","clean_text":true,"handle_chinese_chars":true,"strip_accents":null,"lowercase":true},
"pre_tokenizer":{"type":"BertPreTokenizer"},
"post_processor":null,
"decoder":{"type":"WordPiece","prefix":"##","cleanup":true},
"model":{"type":"WordPiece","unk_token":"[UNK]","continuing_subword_prefix":"##","max_input_chars_per_word":100,
"vocab":{"[UNK]":0,"on":1,"##ce":2,"up":3,"##on":4,"a":5,",":6}}}"###;

// ---- mutation ----

fn below(rng: &mut Rng, n: usize) -> usize {
    (rng.next_u64() % n.max(1) as u64) as usize
}

/// Values that often break size and offset arithmetic.
const INTERESTING: [u64; 16] = [
    0,
    1,
    2,
    3,
    7,
    8,
    255,
    256,
    65535,
    65536,
    0x7FFF_FFFF,
    0x8000_0000,
    0xFFFF_FFFF,
    1 << 32,
    1 << 40,
    u64::MAX,
];

/// The same, as text (JSON numbers and a few non-numbers in their place).
const INTERESTING_TEXT: [&str; 16] = [
    "0",
    "-1",
    "1",
    "3",
    "255",
    "65536",
    "2147483648",
    "4294967296",
    "4611686018427387904",
    "9223372036854775808",
    "18446744073709551615",
    "99999999999999999999999",
    "1e308",
    "null",
    "[]",
    "\"x\"",
];

/// Applies 1 to 4 random mutations to `data`; `donor` is another seed file to splice from.
fn mutate(rng: &mut Rng, data: &mut Vec<u8>, donor: &[u8]) {
    for _ in 0..1 + below(rng, 4) {
        let at = below(rng, data.len());
        match below(rng, 9) {
            0 if !data.is_empty() => data[at] ^= 1 << below(rng, 8),
            1 if !data.is_empty() => data[at] = [0, 0xFF, 0x7F, 0x80, b'0', b'"'][below(rng, 6)],
            2 if data.len() >= 4 => {
                let value = INTERESTING[below(rng, INTERESTING.len())] as u32 ^ (below(rng, 2) as u32).wrapping_neg();
                let at = below(rng, data.len() - 3);
                data[at..at + 4].copy_from_slice(&value.to_le_bytes());
            }
            3 if data.len() >= 8 => {
                let value = INTERESTING[below(rng, INTERESTING.len())];
                let at = below(rng, data.len() - 7);
                data[at..at + 8].copy_from_slice(&value.to_le_bytes());
            }
            4 => {
                let extra: Vec<u8> = (0..1 + below(rng, 16)).map(|_| rng.next_u64() as u8).collect();
                data.splice(at..at, extra);
            }
            5 if !data.is_empty() => {
                let end = (at + 1 + below(rng, data.len() / 8 + 1)).min(data.len());
                data.drain(at..end);
            }
            6 => data.truncate(at),
            7 if !donor.is_empty() => {
                let from = below(rng, donor.len());
                let chunk = &donor[from..(from + 1 + below(rng, 64)).min(donor.len())];
                if below(rng, 2) == 0 {
                    data.splice(at..at, chunk.iter().copied());
                } else {
                    let end = (at + chunk.len()).min(data.len());
                    data.splice(at..end, chunk.iter().copied());
                }
            }
            8 => replace_number(rng, data),
            _ => {}
        }
    }
}

/// Replaces a run of decimal digits (a JSON number, in config.json or the safetensors
/// header) with an interesting number or non-number.
fn replace_number(rng: &mut Rng, data: &mut Vec<u8>) {
    let starts_number = |i: usize| data[i].is_ascii_digit() && (i == 0 || !data[i - 1].is_ascii_digit());
    let digits: Vec<usize> = (0..data.len()).filter(|&i| starts_number(i)).collect();
    if digits.is_empty() {
        return;
    }
    let start = digits[below(rng, digits.len())];
    let end = (start..data.len()).find(|&i| !data[i].is_ascii_digit()).unwrap_or(data.len());
    let text = INTERESTING_TEXT[below(rng, INTERESTING_TEXT.len())];
    data.splice(start..end, text.bytes());
}

fn human(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}
