// The page: model picker, G and backend controls, streaming output and live readouts.
// All inference runs in worker.js; this file only sends requests and draws replies.
import { plot, color } from './charts.js';

const $ = (id) => document.getElementById(id);

// Random-weight speed presets (shapes in src/presets.rs), generated in the worker from a seed.
const PRESETS = [
  { name: 'tiny', label: 'tiny (random weights, ~1M)' },
  { name: '15m', label: '15M params (random weights)' },
  { name: '110m', label: '110M params (random weights, f16)', f16: true },
  { name: '500m', label: '500M params (random weights, f16, ~1 GB)', f16: true },
];
// KV-cache capacity the page asks for: the whole context, up to this many positions.
const MAX_CAPACITY = 2048;
const SWEEP_CONTEXTS = [64, 128, 256, 512, 1024, 1536, 2000];

const state = {
  worker: null,
  ready: false,
  info: null, // the worker's Session.info()
  shipped: null, // {base, uptrained: {G: dir}, variants, dirs}
  loaded: null, // what is loaded: {kind: 'shipped' | 'preset' | 'file', dir?, name?}
  busy: false,
  contextUsed: 0,
  webgpu: null,
  run: null, // the generation in progress: {t0, times, points}
  compare: [],
  sweep: {},
  cache: new Map(), // fetched model files by URL
  tokens: 0, // token messages received (tests check that text streams)
  lastStats: null, // the last generation's statistics
};
// For the end-to-end test (tests/web/e2e.mjs) and the curious: the page state.
window.gqaState = state;

// ---------- worker ----------

function startWorker() {
  state.worker?.terminate();
  state.ready = false;
  state.info = null;
  setBusy(false);
  state.worker = new Worker(new URL(`./worker.js${new URLSearchParams(location.search).get('test') === '1' ? '?test=1' : ''}`, import.meta.url), { type: 'module' });
  state.worker.onmessage = ({ data }) => onWorkerMessage(data);
  state.worker.onerror = (e) => {
    e.preventDefault();
    fail(`The inference worker crashed: ${e.message || 'unknown error'}. Load a model again.`);
    startWorker();
  };
}

const send = (msg, transfer = []) => state.worker.postMessage(msg, transfer);

function onWorkerMessage(m) {
  switch (m.type) {
    case 'ready':
      state.ready = true;
      state.webgpu = m.webgpu;
      state.simd = m.simd;
      showBackendNote();
      // Open with the first model of the picker loaded (the shipped base when there is one).
      if (!state.started) {
        state.started = true;
        state.pickerFilled.then(loadSelected);
      }
      break;
    case 'loaded':
      state.contextUsed = 0;
      clearResults();
      setInfo(m.info);
      setBusy(false);
      progress(null);
      notice(`Loaded in ${m.ms.toFixed(0)} ms.`);
      if (state.pendingGroups) {
        // Back from an uptrained checkpoint to the base: convert to the chosen G.
        const g = state.pendingGroups;
        state.pendingGroups = null;
        setBusy(true);
        send({ type: 'setGroups', g, method: $('method').value, seed: seed() });
      }
      break;
    case 'info':
      setInfo(m.info);
      setBusy(false);
      if (m.convertMs !== undefined) $('progress-label').textContent = `converted to G = ${m.info.n_kv_heads} in ${m.convertMs.toFixed(1)} ms`;
      break;
    case 'token':
      state.tokens++;
      onToken(m.text, m.stats);
      break;
    case 'done':
      state.lastStats = m.stats;
      if (m.stats) onToken('', m.stats, true);
      appendOutput(m.text.slice(state.run.streamed.length));
      setBusy(false);
      break;
    case 'backend':
      state.backendReason = m.reason;
      state.onGpu = m.gpu;
      showBackendNote();
      break;
    case 'gpuLost':
      $('backend').value = 'cpu';
      state.onGpu = false;
      state.backendReason = 'switched to the CPU after a WebGPU failure';
      setInfo(m.info);
      showBackendNote();
      fail(`WebGPU failed (${m.message}). Switched to the CPU engine; the text so far is kept. Generate again to continue on the CPU.`);
      break;
    case 'compareRow':
      addCompareRow(m);
      break;
    case 'sweepPoint':
      (state.sweep[m.g] ??= []).push([m.ctx, m.tokS]);
      drawSweep();
      break;
    case 'finished':
      setInfo(m.info);
      setBusy(false);
      break;
    case 'error':
      setBusy(false);
      progress(null);
      if (m.fatal) {
        // The wasm module aborted: start a fresh worker; the model must be loaded again.
        fail(`${m.message}. The engine was restarted: load a model (a smaller one if memory ran out).`);
        startWorker();
      } else {
        fail(m.message);
      }
      break;
  }
}

// ---------- readouts ----------

function fmtBytes(b) {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  let v = b;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v.toFixed(i ? 2 : 0)} ${units[i]}`;
}

const groupLabel = (g, h) => (g === h ? `MHA (G=${g})` : g === 1 ? 'MQA (G=1)' : `GQA-${g}`);

function setInfo(info) {
  state.info = info;
  if (state.loaded?.kind === 'shipped' && state.loaded.dir === state.shipped.base) state.familyChoices = info.group_choices;
  const sel = $('g-select');
  sel.innerHTML = '';
  const family = familyGroups(info);
  for (const g of family.choices) {
    const o = new Option(groupLabel(g, info.n_heads), g);
    o.selected = g === info.n_kv_heads;
    sel.add(o);
  }
  sel.disabled = false;
  $('model-info').textContent =
    `${(info.params / 1e6).toFixed(2)}M params, ${info.layers} layers, H = ${info.n_heads} query heads of size ${info.head_dim}, ` +
    `loaded with ${info.base_kv_heads} key/value heads, context ${info.context}, vocabulary ${info.vocab}` +
    (info.has_tokenizer ? '' : ' (no tokenizer: the output shows token ids)');
  $('weight-bytes').textContent = fmtBytes(info.weight_bytes);
  $('backend-used').textContent = info.backend;
  updateUptrained();
  updateKv();
}

function updateKv() {
  const info = state.info;
  if (!info) return;
  // At the context the last generation used; before any, at the full context.
  const ctx = state.contextUsed || info.capacity;
  const bytes = info.kv_bytes_per_position * ctx;
  const mha = info.kv_bytes_per_position_mha * ctx;
  $('kv-g').textContent = `${info.n_kv_heads}, context ${ctx}${state.contextUsed ? '' : ' (full)'}`;
  $('kv-bytes').dataset.context = ctx;
  $('kv-bytes').textContent = fmtBytes(bytes);
  $('kv-bytes').dataset.bytes = bytes;
  $('kv-bytes-mha').textContent = fmtBytes(mha);
  $('kv-bytes-mha').dataset.bytes = mha;
  $('kv-bar-mha').style.width = '100%';
  $('kv-bar').style.width = `${(100 * bytes) / mha}%`;
  $('context-used').textContent = `${state.contextUsed} / ${info.capacity}`;
}

function onToken(text, stats, done = false) {
  const run = state.run;
  if (!done) {
    const now = performance.now();
    run.times.push(now);
    // "Now": the rate over the last 8 tokens.
    const k = Math.min(8, run.times.length - 1);
    if (k > 0 && run.times.length > 2) {
      const rate = (1000 * k) / (now - run.times[run.times.length - 1 - k]);
      $('tok-s').textContent = rate.toFixed(1);
      run.points.push([run.times.length, rate]);
      if (run.times.length % 4 === 0) plot($('speed-chart'), [{ label: 'tok/s', points: run.points }], { xLabel: 'token', yLabel: 'tok/s' });
    }
    run.streamed += text;
    appendOutput(text);
    if (!stats) return; // WebGPU: statistics come at the end
  } else {
    $('tok-s').textContent = stats.decode_tok_s.toFixed(1);
    $('tok-s').dataset.final = stats.decode_tok_s;
    plot($('speed-chart'), [{ label: 'tok/s', points: run.points }], { xLabel: 'token', yLabel: 'tok/s' });
    notice(`${stats.generated_tokens} tokens, ${stats.decode_tok_s.toFixed(1)} tok/s on ${stats.backend} (stopped: ${stats.stop_reason}).`);
  }
  $('prefill').textContent = `${stats.prefill_ms.toFixed(1)} ms (${stats.prompt_tokens} tokens)`;
  state.contextUsed = stats.context_used;
  updateKv();
}

// A new model: the comparisons and sweeps of the last one no longer apply.
function clearResults() {
  state.compare = [];
  state.sweep = {};
  $('compare-table').tBodies[0].innerHTML = '';
  for (const id of ['quality-chart', 'sweep-chart']) $(id).getContext('2d').clearRect(0, 0, $(id).width, $(id).height);
}

function appendOutput(text) {
  if (text) $('output').append(text);
}

// ---------- messages ----------

function fail(message) {
  const el = $('error');
  el.textContent = message;
  el.hidden = false;
}

function notice(message) {
  $('notice').textContent = message;
  $('notice').hidden = !message;
}

function clearError() {
  $('error').hidden = true;
}

function progress(fraction, label = '') {
  const bar = $('progress');
  bar.hidden = fraction === null;
  if (fraction !== null) {
    if (fraction === undefined) bar.removeAttribute('value');
    else bar.value = fraction;
  }
  $('progress-label').textContent = label;
}

function setBusy(busy) {
  state.busy = busy;
  const loaded = !!state.info;
  for (const id of ['generate', 'compare-btn', 'sweep-btn', 'load-btn', 'g-select', 'method', 'backend'])
    $(id).disabled = busy || (!loaded && id !== 'load-btn');
  $('stop').disabled = !busy;
  $('uptrained').disabled = busy || $('uptrained').dataset.available !== 'true';
}

// ---------- models ----------

async function discoverShipped() {
  // The training run writes www/models/results.json beside the model folders.
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
    return { base: shipped.base, uptrained, variants: results.variants ?? [] };
  } catch {
    return null;
  }
}

async function fillModelPicker() {
  const sel = $('model-select');
  state.shipped = await discoverShipped();
  if (state.shipped?.base) sel.add(new Option(`TinyStories base model (shipped, MHA)`, `shipped:${state.shipped.base}`));
  for (const p of PRESETS) sel.add(new Option(p.label, `preset:${p.name}`));
}

// A fetch that reports progress through onBytes(received, total).
async function fetchBytes(url, onBytes) {
  if (state.cache.has(url)) return state.cache.get(url);
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
  state.cache.set(url, bytes);
  return bytes;
}

async function loadShippedDir(dir) {
  const base = `models/${dir}/`;
  progress(0, `fetching ${base}model.safetensors`);
  const config = new TextDecoder().decode(await fetchBytes(base + 'config.json', () => {}));
  const weights = await fetchBytes(base + 'model.safetensors', (r, t) =>
    progress(t ? r / t : undefined, `fetching model.safetensors: ${fmtBytes(r)}${t ? ` of ${fmtBytes(t)}` : ''}`));
  const tokenizer = await fetchBytes(base + 'tokenizer.json', () => {});
  progress(undefined, 'loading the model…');
  state.loaded = { kind: 'shipped', dir };
  // Copies: the cached bytes stay here for switching back.
  send({ type: 'load', backend: $('backend').value, capacity: MAX_CAPACITY, source: { kind: 'hf', config, weights: weights.slice().buffer, tokenizer: tokenizer.slice().buffer } });
}

async function loadSelected() {
  clearError();
  const value = $('model-select').value;
  const [kind, name] = value.split(/:(.*)/s);
  setBusy(true);
  try {
    if (kind === 'shipped') {
      $('uptrained').checked = false;
      await loadShippedDir(name);
    } else {
      const preset = PRESETS.find((p) => p.name === name);
      progress(undefined, `generating ${preset.label} from seed ${seed()}…`);
      state.loaded = { kind: 'preset', name };
      send({ type: 'load', backend: $('backend').value, capacity: MAX_CAPACITY, source: { kind: 'preset', name, seed: seed(), f16: !!preset.f16 } });
    }
  } catch (e) {
    setBusy(false);
    progress(null);
    fail(e.message);
  }
}

// The user's own files: a Hugging Face set or a llama2.c pair, told apart by name.
async function loadFiles(fileList) {
  clearError();
  const files = [...fileList];
  const byName = (re) => files.find((f) => re.test(f.name));
  try {
    if (files.length === 0) throw new Error('no files were given');
    const safetensors = byName(/\.safetensors$/i);
    let source;
    if (safetensors) {
      const config = byName(/^config\.json$/i) ?? byName(/config.*\.json$/i);
      if (!config) throw new Error('a .safetensors model needs its config.json: pick both files (and tokenizer.json)');
      const tokenizer = byName(/tokenizer\.json$/i);
      source = { kind: 'hf', config: await config.text(), weights: await safetensors.arrayBuffer(), tokenizer: tokenizer ? await tokenizer.arrayBuffer() : null };
    } else {
      const bins = files.filter((f) => /\.bin$/i.test(f.name)).sort((a, b) => b.size - a.size);
      if (bins.length === 0) {
        throw new Error(`cannot tell what ${files.map((f) => f.name).join(', ')} is: pick config.json + model.safetensors (+ tokenizer.json), or a llama2.c .bin (+ its tokenizer .bin)`);
      }
      const tokenizer = bins.find((f) => /^tok/i.test(f.name)) ?? bins[1];
      const model = bins.find((f) => f !== tokenizer) ?? bins[0];
      source = { kind: 'llama2c', weights: await model.arrayBuffer(), tokenizer: tokenizer && tokenizer !== model ? await tokenizer.arrayBuffer() : null };
    }
    setBusy(true);
    progress(undefined, `loading ${files.map((f) => f.name).join(', ')}…`);
    state.loaded = { kind: 'file' };
    const transfer = [source.weights, source.tokenizer].filter(Boolean);
    send({ type: 'load', backend: $('backend').value, capacity: MAX_CAPACITY, source }, transfer);
  } catch (e) {
    fail(e.message);
  }
}

// ---------- G ----------

// The G choices: the loaded model's, or the base family's when a shipped uptrained
// checkpoint (with fewer heads) is loaded.
function familyGroups(info) {
  if (state.loaded?.kind === 'shipped' && state.loaded.dir !== state.shipped.base && state.familyChoices) {
    return { choices: [...state.familyChoices].reverse() };
  }
  return { choices: [...info.group_choices].reverse() };
}

function updateUptrained() {
  const g = Number($('g-select').value);
  const dir = state.shipped?.uptrained?.[g];
  const shippedFamily = state.loaded?.kind === 'shipped';
  const available = !!(shippedFamily && dir);
  $('uptrained').dataset.available = available;
  $('uptrained').disabled = state.busy || !available;
  if (!available) $('uptrained').checked = false;
  $('uptrained-note').textContent = shippedFamily
    ? available ? `an uptrained checkpoint exists for G = ${g}` : `no uptrained checkpoint for G = ${g}: converted on the fly`
    : 'uptrained checkpoints exist only for the shipped model family';
}

async function applyGroups() {
  clearError();
  const g = Number($('g-select').value);
  const shipped = state.shipped;
  try {
    if (state.loaded?.kind === 'shipped') {
      // Switch between the shipped base (converted on the fly) and an uptrained checkpoint.
      const wanted = $('uptrained').checked && shipped.uptrained[g] ? shipped.uptrained[g] : shipped.base;
      if (wanted !== state.loaded.dir) {
        // An uptrained checkpoint already has G heads; the base is converted once loaded.
        state.pendingGroups = wanted === shipped.base ? g : null;
        setBusy(true);
        await loadShippedDir(wanted);
        return;
      }
    }
    setBusy(true);
    send({ type: 'setGroups', g, method: $('method').value, seed: seed() });
  } catch (e) {
    setBusy(false);
    fail(e.message);
  }
}

// ---------- generate, compare, sweep ----------

const seed = () => Math.max(0, Math.floor(Number($('seed').value) || 0));

function params() {
  return {
    maxTokens: Math.max(1, Math.floor(Number($('max-tokens').value) || 1)),
    temperature: Math.max(0, Number($('temperature').value) || 0),
    topP: Math.min(1, Math.max(0.01, Number($('top-p').value) || 1)),
    topK: 0,
    seed: seed(),
  };
}

function generate() {
  clearError();
  $('output').textContent = $('prompt').value;
  state.run = { times: [], points: [], streamed: '' };
  $('tok-s').textContent = '…';
  delete $('tok-s').dataset.final;
  setBusy(true);
  send({ type: 'generate', prompt: $('prompt').value, params: params() });
}

function qualityFor(g) {
  // The shipped quality table covers the shipped base converted on the fly: the
  // variants with this G and method, before uptraining (alpha 0). The unconverted base
  // (MHA) is the reference.
  const shipped = state.shipped;
  if (state.loaded?.kind !== 'shipped' || state.loaded.dir !== shipped?.base) return null;
  if (g === state.info.base_kv_heads) return { kl_vs_base: 0, top1_agreement: 1 };
  const v = shipped.variants.find((r) => r.n_kv_heads === g && r.method === $('method').value && r.alpha_pct === 0);
  return v?.eval ?? null;
}

function compareAll() {
  clearError();
  state.compare = [];
  $('compare-table').tBodies[0].innerHTML = '';
  setBusy(true);
  send({ type: 'compare', prompt: $('prompt').value, params: params(), groups: familyGroups(state.info).choices.filter((g) => g <= state.info.base_kv_heads), method: $('method').value, seed: seed() });
}

function addCompareRow({ g, text, stats, quality }) {
  // The shipped quality table where it covers this model, else the live measurement.
  const table = qualityFor(g);
  const q = table ?? quality;
  const source = table ? 'table' : quality ? 'live' : '';
  state.compare.push({ g, tokS: stats.decode_tok_s, q });
  const row = $('compare-table').tBodies[0].insertRow();
  const pct = (x) => (x != null ? `${(100 * x).toFixed(1)}%` : '–');
  const cells = [
    groupLabel(g, stats.n_heads),
    stats.decode_tok_s.toFixed(1),
    stats.prefill_ms.toFixed(1),
    fmtBytes(stats.kv_bytes),
    q ? `${q.kl_vs_base?.toFixed(4) ?? '–'} / ${pct(q.top1_agreement)} (${source})` : '–',
    text.slice(0, 160),
  ];
  cells.forEach((c, i) => {
    const td = row.insertCell();
    td.textContent = c;
    if (i === 5) td.className = 'text';
  });
  const points = state.compare
    .filter((r) => r.q?.top1_agreement != null)
    .map((r, i) => ({ label: groupLabel(r.g, stats.n_heads), color: color(i), points: [[r.tokS, 100 * r.q.top1_agreement]] }));
  plot($('quality-chart'), points, { scatter: true, xLabel: 'decode tok/s', yLabel: 'top-1 agreement with the unconverted model (%)' });
}

function sweep() {
  clearError();
  state.sweep = {};
  setBusy(true);
  const contexts = SWEEP_CONTEXTS.filter((c) => c + 8 <= state.info.capacity);
  send({ type: 'sweep', groups: familyGroups(state.info).choices.filter((g) => g <= state.info.base_kv_heads), contexts, steps: 8, method: $('method').value, seed: seed() });
}

function drawSweep() {
  const h = state.info.n_heads;
  const series = Object.entries(state.sweep).map(([g, points]) => ({ label: groupLabel(Number(g), h), points }));
  plot($('sweep-chart'), series, { xLabel: 'context length', yLabel: 'decode tok/s' });
}

// ---------- backend ----------

function showBackendNote() {
  const gpu = state.webgpu;
  const lines = [gpu?.available ? `WebGPU available: ${gpu.reason}${gpu.software ? ' (software fallback adapter)' : ''}.` : `WebGPU unavailable: ${gpu?.reason ?? 'unknown'}.`];
  lines.push(`CPU engine: ${state.simd}, one thread.`);
  if (state.backendReason) lines.push(`Running on ${state.onGpu ? 'WebGPU' : 'the CPU'}: ${state.backendReason}.`);
  $('backend-note').textContent = lines.join(' ');
}

// ---------- wiring ----------

function wire() {
  $('load-btn').onclick = loadSelected;
  $('file-input').onchange = (e) => loadFiles(e.target.files);
  const drop = $('drop-zone');
  drop.ondragover = (e) => { e.preventDefault(); drop.classList.add('over'); };
  drop.ondragleave = () => drop.classList.remove('over');
  drop.ondrop = (e) => { e.preventDefault(); drop.classList.remove('over'); loadFiles(e.dataTransfer.files); };
  $('g-select').onchange = () => { updateUptrained(); applyGroups(); };
  $('method').onchange = applyGroups;
  $('uptrained').onchange = applyGroups;
  $('backend').onchange = () => {
    if (!state.info) return;
    setBusy(true);
    send({ type: 'backend', want: $('backend').value });
  };
  $('generate').onclick = generate;
  $('stop').onclick = () => send({ type: 'stop' });
  $('compare-btn').onclick = compareAll;
  $('sweep-btn').onclick = sweep;
}

wire();
setBusy(false);
state.pickerFilled = fillModelPicker();
startWorker();
