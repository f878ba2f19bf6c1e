// app.js: the page's wiring: controls and worker replies become state transitions, requests and readouts.
import { state, to, can, watch, settle, setInfo } from './state.js';
import { startWorker, send } from './worker-client.js';
import * as sources from './sources.js';
import { fmtBytes, showInfo, startRun, showToken, showDone, clearResults, clearCompare, addCompareRow, drawSweep, showBackendNote } from './readouts.js';
import { fail, clearError, notice, progress } from './messages.js';

const $ = (id) => document.getElementById(id);

// KV-cache capacity the page asks for: the whole context, up to this many positions.
const MAX_CAPACITY = 2048;
const SWEEP_CONTEXTS = [64, 128, 256, 512, 1024, 1536, 2000];

// For the end-to-end test (tests/web/e2e.mjs) and the curious: the page state.
window.gqaState = state;

// ---------- the worker's replies ----------

const replies = {
  ready(m) {
    state.webgpu = m.webgpu;
    state.simd = m.simd;
    showBackendNote();
    const first = state.phase.name === 'starting';
    to('empty');
    // Open with the first model of the picker loaded (the shipped base when there is one).
    if (first) pickerFilled.then(() => state.phase.name === 'empty' && loadSelected());
  },
  loaded(m) {
    const { model, convertTo } = state.phase;
    state.loaded = model;
    state.contextUsed = 0;
    clearResults();
    updateInfo(m.info);
    progress(null);
    notice(`Loaded in ${m.ms.toFixed(0)} ms.`);
    if (convertTo) convert(convertTo);
    else to('ready');
  },
  info(m) {
    updateInfo(m.info);
    if (m.convertMs !== undefined) $('progress-label').textContent = `converted to G = ${m.info.n_kv_heads} in ${m.convertMs.toFixed(1)} ms`;
    to('ready');
  },
  token(m) {
    state.tokens++;
    showToken(m.text, m.stats);
  },
  done(m) {
    state.lastStats = m.stats;
    showDone(m.text, m.stats);
    to('ready');
  },
  backend(m) {
    state.backendReason = m.reason;
    state.onGpu = m.gpu;
    showBackendNote();
  },
  gpuLost(m) {
    $('backend').value = 'cpu';
    state.onGpu = false;
    state.backendReason = 'switched to the CPU after a WebGPU failure';
    updateInfo(m.info);
    showBackendNote();
    fail(`WebGPU failed (${m.message}). Switched to the CPU engine; the text so far is kept. Generate again to continue on the CPU.`);
  },
  compareRow(m) {
    // The shipped quality table where it covers this model, else the live measurement.
    const table = shippedQuality(m.g);
    addCompareRow(m, table ?? m.quality, table ? 'table' : m.quality ? 'live' : '');
  },
  sweepPoint(m) {
    (state.sweep[m.g] ??= []).push([m.ctx, m.tokS]);
    drawSweep();
  },
  finished(m) {
    updateInfo(m.info);
    to('ready');
  },
  error(m) {
    progress(null);
    if (m.fatal) {
      // The wasm module aborted: start a fresh worker; the model must be loaded again.
      fail(`${m.message}. The engine was restarted: load a model (a smaller one if memory ran out).`);
      restartWorker();
    } else {
      fail(m.message);
      settle();
    }
  },
  crash(message) {
    fail(`The inference worker crashed: ${message}. Load a model again.`);
    restartWorker();
  },
};

function updateInfo(info) {
  setInfo(info);
  showInfo();
}

function restartWorker() {
  to('restarting');
  state.info = null;
  state.worker = startWorker(replies);
}

// ---------- requests ----------

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

// Load `model` ({kind, dir?, name?}): enter 'loading', get its source (fetching or reading
// files), send it. convertTo: a G to convert to once loaded.
async function load(model, getSource, convertTo = null) {
  to('loading', { model, convertTo });
  try {
    const { source, label, transfer = [] } = await getSource();
    progress(undefined, label);
    send('load', { backend: $('backend').value, capacity: MAX_CAPACITY, source }, transfer);
  } catch (e) {
    settle();
    progress(null);
    fail(e.message);
  }
}

function loadShipped(dir, convertTo) {
  const onBytes = (r, t) => progress(t ? r / t : undefined, `fetching model.safetensors: ${fmtBytes(r)}${t ? ` of ${fmtBytes(t)}` : ''}`);
  return load({ kind: 'shipped', dir }, async () => {
    progress(0, `fetching models/${dir}/model.safetensors`);
    return { source: await sources.shippedSource(dir, onBytes), label: 'loading the model…' };
  }, convertTo);
}

function loadSelected() {
  clearError();
  const [kind, name] = $('model-select').value.split(/:(.*)/s);
  if (kind === 'shipped') {
    $('uptrained').checked = false;
    return loadShipped(name);
  }
  const preset = sources.PRESETS.find((p) => p.name === name);
  return load({ kind: 'preset', name }, () => ({ source: sources.presetSource(preset, seed()), label: `generating ${preset.label} from seed ${seed()}…` }));
}

function loadFiles(fileList) {
  clearError();
  if (!can('loading')) return fail(state.busy ? 'the model is busy; press Stop first' : 'the engine is still starting');
  const files = [...fileList];
  return load({ kind: 'file' }, async () => {
    const source = await sources.filesSource(files);
    const transfer = [source.weights, source.tokenizer].filter(Boolean);
    return { source, transfer, label: `loading ${files.map((f) => f.name).join(', ')}…` };
  });
}

function convert(g) {
  to('converting');
  send('setGroups', { g, method: $('method').value, seed: seed() });
}

// The G, conversion method or uptrained box changed: convert the loaded model; in the shipped
// family, first switch between the base and an uptrained checkpoint (which already has G heads).
function applyGroups() {
  clearError();
  const g = Number($('g-select').value);
  if (state.onShipped) {
    const wanted = sources.checkpointFor(state.shipped, g, $('uptrained').checked);
    if (wanted !== state.loaded.dir) return loadShipped(wanted, wanted === state.shipped.base ? g : null);
  }
  convert(g);
}

// The shipped quality table covers the shipped base converted on the fly; the unconverted
// base (MHA) is the reference.
function shippedQuality(g) {
  if (!state.onShippedBase) return null;
  if (g === state.info.base_kv_heads) return { kl_vs_base: 0, top1_agreement: 1 };
  return sources.tableQuality(state.shipped, g, $('method').value);
}

function generate() {
  clearError();
  startRun($('prompt').value);
  to('generating');
  send('generate', { prompt: $('prompt').value, params: params() });
}

function compareAll() {
  clearError();
  clearCompare();
  to('comparing');
  send('compare', { prompt: $('prompt').value, params: params(), groups: state.groupsToCompare, method: $('method').value, seed: seed() });
}

function sweep() {
  clearError();
  state.sweep = {};
  to('sweeping');
  const contexts = SWEEP_CONTEXTS.filter((c) => c + 8 <= state.info.capacity);
  send('sweep', { groups: state.groupsToCompare, contexts, steps: 8, method: $('method').value, seed: seed() });
}

function switchBackend() {
  to('switching');
  send('backend', { want: $('backend').value });
}

// ---------- controls ----------

// The uptrained box: offered where the shipped family has a checkpoint for the chosen G.
function showUptrained() {
  const g = Number($('g-select').value);
  const available = !!(state.onShipped && state.shipped.uptrained[g]);
  $('uptrained').disabled = state.phase.name !== 'ready' || !available;
  if (!available) $('uptrained').checked = false;
  $('uptrained-note').textContent = state.onShipped
    ? available ? `an uptrained checkpoint exists for G = ${g}` : `no uptrained checkpoint for G = ${g}: converted on the fly`
    : 'uptrained checkpoints exist only for the shipped model family';
}

// Which controls work follows from the phase alone.
function showControls() {
  const ready = state.phase.name === 'ready';
  for (const id of ['generate', 'compare-btn', 'sweep-btn', 'g-select', 'method', 'backend']) $(id).disabled = !ready;
  $('load-btn').disabled = !can('loading');
  $('stop').disabled = !state.busy;
  showUptrained();
}

async function fillModelPicker() {
  state.shipped = await sources.discoverShipped();
  for (const [label, value] of sources.pickerChoices(state.shipped)) $('model-select').add(new Option(label, value));
}

function wire() {
  $('load-btn').onclick = loadSelected;
  $('file-input').onchange = (e) => loadFiles(e.target.files);
  const drop = $('drop-zone');
  drop.ondragover = (e) => { e.preventDefault(); drop.classList.add('over'); };
  drop.ondragleave = () => drop.classList.remove('over');
  drop.ondrop = (e) => { e.preventDefault(); drop.classList.remove('over'); loadFiles(e.dataTransfer.files); };
  $('g-select').onchange = () => { showUptrained(); applyGroups(); };
  $('method').onchange = applyGroups;
  $('uptrained').onchange = applyGroups;
  $('backend').onchange = switchBackend;
  $('generate').onclick = generate;
  $('stop').onclick = () => send('stop');
  $('compare-btn').onclick = compareAll;
  $('sweep-btn').onclick = sweep;
  watch(showControls);
}

wire();
showControls();
const pickerFilled = fillModelPicker();
state.worker = startWorker(replies);
