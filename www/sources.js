// sources.js: where models come from (the shipped family, presets, the user's files), as the worker's load sources.
import { ggufProblem, HEAD_BYTES } from './downloads.js';

// Random-weight speed presets (shapes in src/presets.rs), generated in the worker from a seed.
export const PRESETS = [
  { name: 'tiny', label: 'tiny (random weights, ~1M params, 4 MB f32, MHA: G = 8, generated here)' },
  { name: '15m', label: '15M params (random weights, 60 MB f32, MHA: G = 8, generated here)' },
  { name: '110m', label: '110M params (random weights, 220 MB f16, MHA: G = 12, generated here)', f16: true },
  { name: '500m', label: '500M params (random weights, ~1 GB f16, MHA: G = 16, generated here)', f16: true },
];

// The KV cache the page opens a GGUF model with (a real model below, or one by link or
// file): its whole context up to this many positions, in f16 unless the KV control asks
// otherwise (half of f32's bytes). The one place this is chosen; the engine then fits it
// to this tab's memory (kv_fit), shortening it where MHA's cache would not fit.
export const GGUF_KV = { capacity: 8192, kvDtype: 'f16' };

// Real pretrained models, offered when their file is on the server (git-ignored: fetched
// by scripts/fetch-model.sh into www/models/). Whether it chats, and its default system
// message, come from the file (the session's info()).
export const REAL_MODELS = [
  {
    name: 'smollm2',
    path: 'models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf',
    label: 'SmolLM2-135M-Instruct (GGUF Q4_1, 98 MB, native GQA-3, Hugging Face, Apache-2.0)',
    fetch: 'bash scripts/fetch-model.sh smollm2',
    ...GGUF_KV,
  },
];

// The real models whose file the server has (a HEAD request each; the server is static).
export async function discoverReal() {
  const found = await Promise.all(REAL_MODELS.map(async (m) => {
    try {
      return (await fetch(m.path, { method: 'HEAD' })).ok ? m : null;
    } catch {
      return null;
    }
  }));
  return found.filter(Boolean);
}

export const realModel = (name) => REAL_MODELS.find((m) => m.name === name) ?? null;

// The shipped family, from the models/results.json that the training run writes beside the
// model folders: {base: dir, uptrained: {G: dir}, variants}, or null when there is none.
export async function discoverShipped() {
  try {
    const res = await fetch('models/results.json');
    if (!res.ok) return null;
    const results = await res.json();
    const shipped = Object.fromEntries(results.shipped.map(([dir, run]) => [run, dir]));
    const uptrained = {};
    for (const [run, dir] of Object.entries(shipped)) {
      const m = /^g(\d+)-mean-a\d+$/.exec(run);
      if (m) uptrained[m[1]] = dir;
    }
    // runs: the training run behind each folder, e.g. {'gqa-4': 'g4-mean-a5'}.
    const runs = Object.fromEntries(results.shipped.map(([dir, run]) => [dir, run]));
    const variants = results.variants ?? [];
    // For the picker: the base's size (its weights file) and key/value heads.
    const head = await fetch(`models/${shipped.base}/model.safetensors`, { method: 'HEAD' }).catch(() => null);
    const baseBytes = Number(head?.headers.get('content-length')) || 0;
    const baseG = variants.find((r) => r.name === 'base')?.n_kv_heads ?? null;
    return { base: shipped.base, uptrained, runs, variants, evalLong: results.eval_long_text ?? null, baseBytes, baseG };
  } catch {
    return null;
  }
}

// The model picker's choices, [label, value]: 'real:<name>', 'shipped:<dir>' or
// 'preset:<name>', each label naming the model's size, native G and origin. The real
// models come first (the page opens on the first choice).
export function pickerChoices(shipped, real = []) {
  const mb = shipped?.baseBytes ? `${(shipped.baseBytes / 1e6).toFixed(1)} MB f16, ` : '';
  const g = shipped?.baseG ? `MHA: G = ${shipped.baseG}, ` : 'MHA, ';
  const base = shipped?.base ? [[`TinyStories base model (${mb}${g}trained by this project)`, `shipped:${shipped.base}`]] : [];
  return [...real.map((m) => [m.label, `real:${m.name}`]), ...base, ...PRESETS.map((p) => [p.label, `preset:${p.name}`])];
}

// The shipped checkpoint for G: the uptrained one when wanted and shipped, else the base.
export const checkpointFor = (shipped, g, uptrained) => (uptrained && shipped.uptrained[g]) || shipped.base;

// The shipped quality table's row for the base converted to G by `method`, before
// uptraining (alpha 0; the base itself for G = H), or null.
export function tableVariant(shipped, g, method, baseG) {
  if (g === baseG) return shipped.variants.find((r) => r.name === 'base') ?? null;
  return shipped.variants.find((r) => r.n_kv_heads === g && r.method === method && r.alpha_pct === 0) ?? null;
}

// The table's row for a shipped folder (the base or an uptrained checkpoint), or null.
export const folderVariant = (shipped, dir) => shipped.variants.find((r) => r.name === shipped.runs[dir]) ?? null;

const cache = new Map(); // fetched model files by URL, kept for switching back

// A fetch that reports progress through onBytes(received, total); keep: cache the bytes.
async function fetchBytes(url, onBytes = () => {}, keep = true) {
  if (cache.has(url)) return cache.get(url);
  const res = await fetch(url);
  if (!res.ok) throw new Error(`cannot fetch ${url}: HTTP ${res.status}`);
  const total = Number(res.headers.get('content-length')) || 0;
  const reader = res.body.getReader();
  const chunks = [];
  let received = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    received += value.length;
    onBytes(received, total);
  }
  const bytes = new Uint8Array(received);
  let at = 0;
  for (const c of chunks) { bytes.set(c, at); at += c.length; }
  if (keep) cache.set(url, bytes);
  return bytes;
}

// A shipped model folder (models/<dir>/), fetched once; onBytes reports the weights' progress.
export async function shippedSource(dir, onBytes) {
  const base = `models/${dir}/`;
  const config = new TextDecoder().decode(await fetchBytes(base + 'config.json'));
  const weights = await fetchBytes(base + 'model.safetensors', onBytes);
  const tokenizer = await fetchBytes(base + 'tokenizer.json');
  // Copies: the cached bytes stay here.
  return { kind: 'hf', config, weights: weights.slice().buffer, tokenizer: tokenizer.slice().buffer };
}

// Real models' files being fetched ahead (prefetchGguf), by path, until a load takes them.
const ahead = new Map();

// Start fetching a real model's GGUF file now, for the next ggufSource of it to take (the
// page does so for the model it opens on, while its worker starts). A failed fetch is
// reported by that load.
export function prefetchGguf(model, onBytes) {
  if (ahead.has(model.path)) return;
  const bytes = fetchBytes(model.path, onBytes, false);
  bytes.catch(() => {});
  ahead.set(model.path, bytes);
}

// A real model's GGUF file (weights, tokenizer and chat template in one), fetched each
// time it is loaded (not kept here: the worker gets the only copy of its 98 MB).
export async function ggufSource(model, onBytes) {
  const fetching = ahead.get(model.path) ?? fetchBytes(model.path, onBytes, false);
  ahead.delete(model.path);
  const bytes = await fetching;
  return { kind: 'gguf', weights: bytes.buffer };
}

export const presetSource = (preset, seed) => ({ kind: 'preset', name: preset.name, seed, f16: !!preset.f16 });

// The user's .gguf file among `files`, or undefined.
export const ggufFile = (files) => files.find((f) => /\.gguf$/i.test(f.name));

// The user's own files: a GGUF file, a Hugging Face set or a llama2.c pair, told apart by name.
// A GGUF file's first bytes are checked here, as a link's are (downloads.js).
export async function filesSource(files) {
  const byName = (re) => files.find((f) => re.test(f.name));
  if (files.length === 0) throw new Error('no files were given');
  const gguf = ggufFile(files);
  if (gguf) {
    const problem = ggufProblem(new Uint8Array(await gguf.slice(0, HEAD_BYTES).arrayBuffer()), gguf.name);
    if (problem) throw new Error(problem);
    return { kind: 'gguf', weights: await gguf.arrayBuffer() };
  }
  const safetensors = byName(/\.safetensors$/i);
  if (safetensors) {
    const config = byName(/^config\.json$/i) ?? byName(/config.*\.json$/i);
    if (!config) throw new Error('a .safetensors model needs its config.json: pick both files (and tokenizer.json)');
    const tokenizer = byName(/tokenizer\.json$/i);
    return { kind: 'hf', config: await config.text(), weights: await safetensors.arrayBuffer(), tokenizer: tokenizer ? await tokenizer.arrayBuffer() : null };
  }
  const bins = files.filter((f) => /\.bin$/i.test(f.name)).sort((a, b) => b.size - a.size);
  if (bins.length === 0) {
    throw new Error(`cannot tell what ${files.map((f) => f.name).join(', ')} is: pick a .gguf file, config.json + model.safetensors (+ tokenizer.json), or a llama2.c .bin (+ its tokenizer .bin)`);
  }
  const tokenizer = bins.find((f) => /^tok/i.test(f.name)) ?? bins[1];
  const model = bins.find((f) => f !== tokenizer) ?? bins[0];
  return { kind: 'llama2c', weights: await model.arrayBuffer(), tokenizer: tokenizer && tokenizer !== model ? await tokenizer.arrayBuffer() : null };
}
