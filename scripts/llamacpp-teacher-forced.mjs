// llama.cpp's teacher-forced next-token predictions on the start of a text, as a JSON
// fixture: what a correct decoder must reproduce on the same token ids.
//
//   node scripts/llamacpp-teacher-forced.mjs --modules DIR MODEL.gguf TEXT N > FIXTURE.json
//
// DIR is a node_modules folder outside this repository holding node-llama-cpp 3.21.1
// (`npm i node-llama-cpp@3.21.1` there; prebuilt CPU binaries of llama.cpp), as for
// scripts/tokenize-llamacpp.mjs, so the project's package.json does not depend on it.
//
// The text is tokenized by llama.cpp (special tokens parsed, no BOS: the file's
// tokenizer.ggml.add_bos_token is false, checked below) and cut to its first N ids. The
// N ids are evaluated in one context, in order (teacher forcing: position i sees the
// true ids 0..i; llama.cpp decodes them in batches of 64 positions, as a prompt is, not
// one at a time, so its matrix kernels may round a little differently than in a
// token-by-token decode), and after each position i < N-1 the script records llama.cpp's argmax
// next token and the natural log of the probability it gives the true next id, from the
// softmax over all the vocabulary's logits. node-llama-cpp exposes that softmax:
// LlamaContextSequence.controlledEvaluate with generateNext {token, probabilities} and
// temperature 0 runs a sampler chain of only llama.cpp's greedy sampler, which keeps all
// n_vocab candidates, and its addon (AddonContext.cpp, SampleToken) returns
// exp(logit - max) / sum over every candidate, in float32: the probabilities of the whole
// vocabulary, not a top-k. It does not return the raw logits, so the log-probability is
// log(float32 probability): exact to float32 rounding (about 1e-7 relative), except that a
// probability below float32's normal range (a logit more than ~87 below the best) would
// lose precision; the script reports the smallest probability it met.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';

const argv = process.argv.slice(2);
const at = argv.indexOf('--modules');
const rest = argv.filter((_, i) => i !== at && i !== at + 1);
if (at < 0 || rest.length !== 3) {
  console.error('usage: node scripts/llamacpp-teacher-forced.mjs --modules DIR MODEL.gguf TEXT N > FIXTURE.json');
  process.exit(2);
}
const modules = argv[at + 1];
const [modelPath, textPath, nArg] = rest;
const N = Number(nArg);
const THREADS = Number(process.env.THREADS ?? 2);
// Positions per controlledEvaluate call: each returns a Map of the whole vocabulary per
// position, so the calls are kept short; they continue the same sequence (one context).
const CHUNK = 64;

const require = createRequire(join(modules, 'resolve-from-here.js'));
const load = async (name) => import(pathToFileURL(require.resolve(name)).href);
const { getLlama } = await load('node-llama-cpp');
// Its version, from the package.json above its entry point (the package exports no ./package.json).
function versionOf(name) {
  for (let dir = dirname(require.resolve(name)); dir !== dirname(dir); dir = dirname(dir)) {
    const file = join(dir, 'package.json');
    if (existsSync(file) && JSON.parse(readFileSync(file, 'utf8')).name === name) return JSON.parse(readFileSync(file, 'utf8')).version;
  }
  throw new Error(`no package.json for ${name}`);
}
const version = versionOf('node-llama-cpp');

const modelBytes = readFileSync(modelPath);
const sha256 = createHash('sha256').update(modelBytes).digest('hex');

const llama = await getLlama({ gpu: false, build: 'never' });
const model = await llama.loadModel({ modelPath });
const addBos = model.fileInfo.metadata.tokenizer?.ggml?.add_bos_token;
if (addBos !== false) throw new Error(`expected tokenizer.ggml.add_bos_token = false in ${modelPath}, found ${addBos}`);

// Tokenize only enough of the text: a prefix of characters far longer than N tokens, cut
// at a blank line or space so that the first N ids are those of the whole text.
const text = readFileSync(textPath, 'utf8');
let end = Math.min(text.length, N * 16);
if (end < text.length) end = text.lastIndexOf(' ', end);
const all = Array.from(model.tokenize(text.slice(0, end), true));
if (all.length < N + 1) throw new Error(`only ${all.length} tokens in the first ${end} characters of ${textPath}`);
const ids = all.slice(0, N);

const context = await model.createContext({ contextSize: Math.max(1024, N), batchSize: 512, threads: THREADS });
const sequence = context.getSequence();
const argmax = [];
const logprob = [];
let minProb = Infinity;
let candidates = Infinity; // the fewest tokens in any softmax (the whole vocabulary: see above)
const greedy = { token: true, probabilities: true, options: { temperature: 0 } };
for (let start = 0; start < N; start += CHUNK) {
  const chunk = ids.slice(start, start + CHUNK);
  // A prediction after every position but the last of the N.
  const input = chunk.map((id, k) => (start + k < N - 1 ? [id, { generateNext: greedy }] : id));
  const out = await sequence.controlledEvaluate(input);
  for (let k = 0; k < chunk.length; k++) {
    const i = start + k;
    if (i >= N - 1) break;
    const { token, probabilities } = out[k].next;
    const p = probabilities.get(ids[i + 1]);
    if (p === undefined) throw new Error(`position ${i}: no probability for token ${ids[i + 1]} (${probabilities.size} candidates)`);
    for (const q of probabilities.values()) if (q > 0 && q < minProb) minProb = q;
    argmax.push(token);
    logprob.push(Math.log(p));
    candidates = Math.min(candidates, probabilities.size);
  }
}
const n = logprob.length;
const nats = -logprob.reduce((a, b) => a + b, 0) / n;
const top1 = argmax.filter((t, i) => t === ids[i + 1]).length / n;
const round = (x) => Math.round(x * 1e5) / 1e5;

const fixture = {
  about:
    `llama.cpp (node-llama-cpp ${version}, CPU, ${THREADS} threads) teacher-forced on the first ${N} tokens of ${basename(textPath)}: ` +
    'ids = llama.cpp tokenize(text, special tokens parsed, no BOS: add_bos_token is false) cut to N; ' +
    'for i < N-1, argmax[i] = its greedy next token after ids[0..=i] and logprob[i] = ln p(ids[i+1]), ' +
    'from its softmax over all vocab logits (float32, via controlledEvaluate generateNext.probabilities at temperature 0), rounded to 1e-5; ' +
    'nats_per_token = -mean(logprob), top1 = share of argmax[i] == ids[i+1]',
  command: `node scripts/llamacpp-teacher-forced.mjs --modules DIR ${modelPath} ${textPath} ${N}`,
  node_llama_cpp: version,
  model: basename(modelPath),
  model_sha256: sha256,
  threads: THREADS,
  n_tokens: N,
  n_predictions: n,
  softmax_over: candidates,
  smallest_probability: minProb,
  nats_per_token: round(nats),
  top1: round(top1),
  ids,
  argmax,
  logprob: logprob.map(round),
};
// Arrays on one line each: the fixture stays short.
const lines = Object.entries(fixture).map(([key, value]) => ` "${key}": ${JSON.stringify(value)}`);
console.log(`{\n${lines.join(',\n')}\n}`);
console.error(`${n} predictions: ${nats.toFixed(4)} nats/token, top-1 ${(100 * top1).toFixed(1)}%`);
await context.dispose();
await model.dispose();
await llama.dispose();
