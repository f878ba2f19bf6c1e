// A native peer you can rerun: llama.cpp (through node-llama-cpp, its prebuilt CPU build)
// and `gqa generate` on the same GGUF file, same prompt ids, greedy, at each thread
// count, interleaved (ours, theirs, ours, theirs, ...; `rounds` rounds; medians), with each
// engine's decode speed set against this machine's memory read bandwidth.
//
//   cargo build --release        # ours; without target/release/gqa only llama.cpp runs
//   node scripts/bench-peer-native.mjs --modules DIR [MODEL.gguf] [threads=1,2] [tokens=128] [rounds=3] [activations=exact,int8]
//
// `activations`: ours on each of its paths on block weights (`gqa --activations`): exact f32
// (the default) and int8 per block, llama.cpp's own arithmetic.
//
// DIR: a node_modules folder outside this repository with node-llama-cpp 3.21.1 (and
// @huggingface/jinja, which it brings), as for scripts/tokenize-llamacpp.mjs. MODEL
// defaults to SmolLM2-135M-Instruct's GGUF (scripts/fetch-model.sh smollm2), else the
// copy in ../shared. GQA=path runs another gqa binary.
//
// Prompt: the model's chat template (rendered by @huggingface/jinja, as llama.cpp's
// chat does) for one user message, "Tell me a story about a dragon.", with the
// assistant's turn opened; llama.cpp tokenizes it (special tokens parsed, no BOS: the
// file says add_bos_token false) and evaluates those ids; `gqa generate` gets the same
// text, and the script checks that its prompt_tokens count is the same.
//
// Decode tok/s counts generated tokens only: llama.cpp's from the time of its first
// generated token (which includes the prompt's prefill) to its last, over the tokens in
// between; ours is `gqa generate --json`'s decode_tok_s (decode only, prefill apart).
// Both stop at an end-of-generation token or after `tokens` tokens; both KV caches are
// f16 (llama.cpp's default; ours with --kv-dtype f16), 1024 positions.
//
// Share of read bandwidth: bytes read per token x tok/s over the memory read bandwidth
// measured in this run at the same thread count (before each round: T worker threads
// each reading its part of a 256 MiB buffer, one load per cache line, median of 5). Bytes per token are
// approximated by the GGUF's tensor data (file size minus the header, metadata and
// tensor infos): every weight matrix is read once per token, token_embd.weight too since
// it is also the output head (tied); the KV cache read (a few MB at these lengths) and the
// embedding row are left out, so the share is a slight underestimate.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { median } from './support.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const argv = process.argv.slice(2);
const at = argv.indexOf('--modules');
if (at < 0 || !argv[at + 1]) {
  console.error('usage: node scripts/bench-peer-native.mjs --modules DIR [MODEL.gguf] [threads=1,2] [tokens=128] [rounds=3]');
  process.exit(2);
}
const modules = argv[at + 1];
const rest = argv.filter((_, i) => i !== at && i !== at + 1);
const opt = Object.fromEntries(rest.filter((a) => a.includes('=')).map((a) => a.split('=', 2)));
const given = rest.find((a) => !a.includes('='));
const modelPath = given ?? [
  join(root, 'www/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf'),
  join(root, '../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf'),
].find(existsSync);
if (!modelPath || !existsSync(modelPath)) {
  console.error(`no model: ${modelPath ?? 'none given, none fetched'} (bash scripts/fetch-model.sh smollm2)`);
  process.exit(1);
}
const threadCounts = (opt.threads ?? '1,2').split(',').map(Number);
const TOKENS = Number(opt.tokens ?? 128);
const ACTIVATIONS = (opt.activations ?? 'exact,int8').split(',');
const ROUNDS = Number(opt.rounds ?? 3);
const CONTEXT = 1024;
const MESSAGES = [{ role: 'user', content: 'Tell me a story about a dragon.' }];
const gqa = process.env.GQA ?? join(root, 'target/release/gqa');

const require = createRequire(join(modules, 'resolve-from-here.js'));
const load = async (name) => import(pathToFileURL(require.resolve(name)).href);
const { getLlama } = await load('node-llama-cpp');
const { Template } = await load('@huggingface/jinja');

// maxThreads 0: no cap, so a context's `threads` is the number it uses.
const llama = await getLlama({ gpu: false, build: 'never', maxThreads: 0 });
const model = await llama.loadModel({ modelPath });
const info = model.fileInfo;
if (info.metadata.tokenizer?.ggml?.add_bos_token !== false) console.warn('note: the file does not say add_bos_token = false');
const prompt = new Template(info.metadata.tokenizer.chat_template).render({ messages: MESSAGES, add_generation_prompt: true });
const promptIds = Array.from(model.tokenize(prompt, true));
const fileBytes = statSync(modelPath).size;
const tensorBytes = fileBytes - info.infoEndOffset;

// llama.cpp: greedy from the prompt ids in a fresh context with `threads` threads.
async function theirs(threads) {
  const context = await model.createContext({ contextSize: CONTEXT, batchSize: 512, threads });
  try {
    const sequence = context.getSequence();
    const ids = [];
    const times = [];
    for await (const id of sequence.evaluate(promptIds, { temperature: 0 })) {
      if (model.isEogToken(id)) break;
      times.push(performance.now());
      ids.push(id);
      if (ids.length >= TOKENS) break;
    }
    const tokS = ((ids.length - 1) * 1e3) / (times.at(-1) - times[0]);
    return { tokS, n: ids.length, text: model.detokenize(ids) };
  } finally {
    await context.dispose();
  }
}

// Ours: `gqa generate` on the same file and text, RAYON_NUM_THREADS threads (it sizes
// rayon's pool; `generate` has no --threads flag), its stats as JSON on stderr.
let oursMissing = existsSync(gqa) ? null : `${gqa} not found (cargo build --release)`;
function ours(threads, activations) {
  if (oursMissing) return null;
  const args = ['generate', '--model', modelPath, '--prompt', prompt, '-n', String(TOKENS), '--temperature', '0',
    '--context', String(CONTEXT), '--kv-dtype', 'f16', '--activations', activations, '--json'];
  const r = spawnSync(gqa, args, { env: { ...process.env, RAYON_NUM_THREADS: String(threads) }, encoding: 'utf8', maxBuffer: 1 << 26 });
  // The stats: the pretty-printed JSON object that starts a line of stderr.
  const json = r.stderr?.slice(r.stderr.search(/^\{/m));
  let stats;
  try {
    stats = JSON.parse(json);
  } catch {
    const why = r.stderr?.trim().split('\n').at(-1) || r.error?.message || 'no output';
    oursMissing = `gqa generate failed (status ${r.status}): ${why}`;
    return null;
  }
  if (stats.prompt_tokens !== promptIds.length) console.warn(`note: ours read the prompt as ${stats.prompt_tokens} tokens, llama.cpp as ${promptIds.length}`);
  return { tokS: stats.decode_tok_s, n: stats.generated_tokens, text: r.stdout.slice(prompt.length).replace(/\n$/, '') };
}

// Memory read bandwidth with `threads` worker threads, each reading its part of one
// shared 256 MiB buffer (written first), started together; median of `reps` after a warm-up.
const BW_BYTES = 256 << 20;
const shared = new SharedArrayBuffer(BW_BYTES);
new Int32Array(shared).fill(1);
const control = new Int32Array(new SharedArrayBuffer(8)); // [generation, done]
const WORKER = `
const { workerData: { shared, control, part, parts } } = require('node:worker_threads');
// One 4-byte load per 64-byte cache line: memory still delivers every line (the
// hardware reads whole lines), and JIT-compiled JavaScript, which has no SIMD, does
// not become the limit as a sum of every element would on a fast memory system.
const all = new Int32Array(shared);
const n = Math.floor(all.length / parts / 64) * 64;
const a = all.subarray(part * n, (part + 1) * n);
let generation = 0, sink = 0;
for (;;) {
  Atomics.wait(control, 0, generation);
  generation = Atomics.load(control, 0);
  if (generation < 0) break;
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (let i = 0; i < a.length; i += 64) {
    s0 ^= a[i]; s1 ^= a[i + 16]; s2 ^= a[i + 32]; s3 ^= a[i + 48];
  }
  sink ^= s0 ^ s1 ^ s2 ^ s3;
  Atomics.add(control, 1, 1);
  Atomics.notify(control, 1);
}
`;
async function readBandwidth(threads, reps = 5) {
  const workers = Array.from({ length: threads }, (_, part) =>
    new Worker(WORKER, { eval: true, workerData: { shared, control, part, parts: threads } }));
  await new Promise((r) => setTimeout(r, 200)); // let them reach their first wait
  const seconds = [];
  for (let rep = 0; rep <= reps; rep++) {
    Atomics.store(control, 1, 0);
    const start = performance.now();
    Atomics.add(control, 0, 1);
    Atomics.notify(control, 0);
    for (let done; (done = Atomics.load(control, 1)) < threads;) Atomics.wait(control, 1, done, 1000);
    if (rep > 0) seconds.push((performance.now() - start) / 1e3); // the first one warms up (JIT)
  }
  Atomics.store(control, 0, -1);
  Atomics.notify(control, 0);
  await Promise.all(workers.map((w) => new Promise((r) => w.on('exit', r))));
  Atomics.store(control, 0, 0);
  const used = Math.floor(BW_BYTES / 4 / threads / 64) * 64 * 4 * threads;
  return used / median(seconds);
}

console.error(`${modelPath}: ${(fileBytes / 1e6).toFixed(1)} MB, tensor data ${(tensorBytes / 1e6).toFixed(1)} MB; prompt ${JSON.stringify(prompt)}, ${promptIds.length} tokens; ` +
  `${ROUNDS} rounds x threads ${threadCounts.join(',')}, ${TOKENS} tokens each${oursMissing ? `; ours skipped: ${oursMissing}` : ''}`);
// Other work on the machine skews the figures (llama.cpp's threads spin at their barriers, so
// with more runnable threads than cores its multi-thread speed collapses): the load is shown.
const loadNow = () => loadavg()[0].toFixed(2);
const loadBefore = loadNow();
const runs = new Map(threadCounts.map((t) => [t, { ours: Object.fromEntries(ACTIVATIONS.map((a) => [a, []])), theirs: [], bw: [] }]));
for (let round = 0; round < ROUNDS; round++) {
  for (const t of threadCounts) {
    const r = runs.get(t);
    r.bw.push(await readBandwidth(t));
    const mine = [];
    for (const a of ACTIVATIONS) {
      const o = ours(t, a);
      if (o) r.ours[a].push(o);
      if (o) mine.push(`ours (${a}) ${o.tokS.toFixed(1)} tok/s`);
    }
    r.theirs.push(await theirs(t));
    console.error(`round ${round + 1}, ${t} threads: read ${(r.bw.at(-1) / 1e9).toFixed(2)} GB/s, ` +
      `llama.cpp ${r.theirs.at(-1).tokS.toFixed(1)} tok/s${mine.map((m) => `, ${m}`).join('')}`);
  }
}

const version = (() => {
  for (let dir = dirname(require.resolve('node-llama-cpp')); dir !== dirname(dir); dir = dirname(dir)) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      const p = JSON.parse(readFileSync(file, 'utf8'));
      if (p.name === 'node-llama-cpp') return p.version;
    }
  }
  return '?';
})();
console.log(`model ${modelPath} (${(tensorBytes / 1e6).toFixed(1)} MB of tensor data read per token, approx.), ` +
  `chat prompt ${JSON.stringify(MESSAGES[0].content)} (${promptIds.length} tokens), greedy, up to ${TOKENS} tokens, ` +
  `decode only, median of ${ROUNDS} rounds; llama.cpp = node-llama-cpp ${version} (CPU); ` +
  `${cpus().length} CPUs, load average ${loadBefore} before, ${loadNow()} after`);
console.log('| engine | threads | decode tok/s | tokens | read bandwidth GB/s | share of read bandwidth |\n|---|---:|---:|---:|---:|---:|');
for (const [t, r] of runs) {
  const bw = median(r.bw);
  for (const [name, list] of [...ACTIVATIONS.map((a) => [`ours (gqa, ${a})`, r.ours[a]]), ['llama.cpp', r.theirs]]) {
    if (!list.length) {
      console.log(`| ${name} | ${t} | - | - | ${(bw / 1e9).toFixed(2)} | - |`);
      continue;
    }
    const tokS = median(list.map((x) => x.tokS));
    console.log(`| ${name} | ${t} | ${tokS.toFixed(1)} | ${list[0].n} | ${(bw / 1e9).toFixed(2)} | ${((100 * tensorBytes * tokS) / bw).toFixed(0)}% |`);
  }
}
if (oursMissing) console.log(`ours: skipped (${oursMissing})`);
// The texts: greedy on the same ids should agree (up to where one stopped).
for (const [t, r] of runs) {
  const a = r.theirs[0]?.text ?? '';
  for (const act of ACTIVATIONS) {
    const b = r.ours[act][0]?.text;
    if (b === undefined) continue;
    const len = Math.min(a.length, b.length);
    const same = a.slice(0, len) === b.slice(0, len);
    console.log(`${t} threads, ours ${act}: same text ${same ? 'yes' : 'NO'} (${len} chars compared)`);
    if (!same) console.log(`  llama.cpp: ${JSON.stringify(a.slice(0, 200))}\n  ours:      ${JSON.stringify(b.slice(0, 200))}`);
  }
}
console.log(`llama.cpp's text: ${JSON.stringify(runs.get(threadCounts[0]).theirs[0].text.slice(0, 160))}...`);
await model.dispose();
await llama.dispose();
