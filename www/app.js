// app.js: the page's wiring: controls and worker replies become state transitions, requests and readouts.
import { state, to, can, watch, settle, setInfo } from './state.js';
import { startWorker, send } from './worker-client.js';
import { Request, Reply } from './messages.js';
import { becomeIsolated } from './isolation.js';
import * as sources from './sources.js';
import { showInfo, startRun, showToken, showDone, clearResults, clearCompare, addCompareRow, updateCompareSpeed, drawSweep, showBackendNote, engineLabel } from './readouts.js';
import { fail, clearError, notice, progress } from './notices.js';
import { drawHeads } from './diagram.js';
import { drawAttention, describeCell } from './attention.js';
import { exportJson, exportCsv, exportPng, shareLink, settingsFromUrl } from './exports.js';
import { showChatView, newChat, ask, appendReply, finishReply, failReply, lastQuestion } from './chat.js';
import { probe, expectQuality, showQuality } from './quality.js';
import { isLink } from './downloads.js';
import { pickLink, enableLinks, wireLinks } from './links.js';
import { loadSelected, loadShipped, loadLink, loadFiles, prefetchOpening } from './loading.js';
import { seed, params } from './params.js';

const $ = (id) => document.getElementById(id);

// The sweep's contexts, up to the KV capacity (which is always the last point).
const SWEEP_CONTEXTS = [64, 128, 256, 512, 1024, 1536, 2048, 3072, 4096, 6144, 8192];
const SWEEP_STEPS = 8;

// For the end-to-end test (tests/web/e2e.mjs) and the curious: the page state.
window.gqaState = state;

// ---------- the worker's replies ----------

const replies = {
  [Reply.ready](m) {
    state.webgpu = m.webgpu;
    state.simd = m.simd;
    state.threads = m.threads;
    state.threadsWhy = m.threadsWhy;
    showBackendNote();
    const first = state.phase.name === 'starting';
    to('empty');
    // Open with the link's model and G, else the first model of the picker (the shipped
    // base when there is one).
    if (first) pickerFilled.then(() => state.phase.name === 'empty' && loadSelected(restoreFromLink()));
  },
  [Reply.loaded](m) {
    const { model, convertTo } = state.phase;
    state.loaded = model;
    state.contextUsed = 0;
    clearResults();
    newChat();
    showChatView(m.info.chat, m.info.defaultSystemPrompt ?? '');
    updateInfo(m.info);
    showBackendNote();
    expectQuality(m.info.nKvHeads);
    // Compare at the model's whole context (as far as the KV cache holds) unless a shorter
    // one was chosen (typed, or from a link).
    const chosen = Number($('context').value);
    if (!$('context').dataset.chosen || !(chosen > 0 && chosen <= m.info.capacity)) $('context').value = m.info.capacity;
    if (model.kind === 'link') pickLink(model.url, model.bytes);
    progress(null);
    notice(`Loaded in ${m.ms.toFixed(0)} ms${model.note ? ` (${model.note})` : ''}.`);
    if (convertTo) convert(convertTo);
    else to('ready');
  },
  [Reply.info](m) {
    updateInfo(m.info);
    showBackendNote();
    if (m.convertMs !== undefined) $('progress-label').textContent = `converted to G = ${m.info.nKvHeads} in ${m.convertMs.toFixed(1)} ms`;
    // A conversion with a probe stays busy until its quality arrives.
    if (!state.phase.probe) to('ready');
  },
  [Reply.quality](m) {
    showQuality(m);
    to('ready');
  },
  [Reply.token](m) {
    state.tokens++;
    showToken(m.text, m.stats);
    appendReply(m.text);
  },
  [Reply.done](m) {
    state.lastStats = m.stats;
    showDone(m.text, m.stats);
    finishReply(m.text, m.stats);
    to('ready');
    if ($('probe').checked) requestAttention();
  },
  [Reply.attention](m) {
    state.attention = m.view;
    drawAttention();
  },
  [Reply.backend](m) {
    state.backendReason = m.reason;
    state.onGpu = m.gpu;
    showBackendNote();
  },
  [Reply.gpuLost](m) {
    $('backend').value = 'cpu';
    state.onGpu = false;
    state.backendReason = 'switched to the CPU after a WebGPU failure';
    updateInfo(m.info);
    showBackendNote();
    fail(`WebGPU failed (${m.message}). Switched to the CPU engine; the text so far is kept. Generate again to continue on the CPU.`);
  },
  [Reply.compareRow](m) {
    // The shipped quality table where it covers this row, else the live measurement. The
    // table was measured with an f32 KV cache (f16 moves it by rounding only); comparing
    // precisions, or with int8, every row is measured live against the f32 base.
    addCompareRow(m, m.kvDtype !== 'int8' && !state.comparingPrecisions ? shippedQuality(m) : null);
  },
  [Reply.compareSpeed](m) {
    updateCompareSpeed(m);
  },
  [Reply.sweepPoint](m) {
    (state.sweep[m.g] ??= []).push([m.ctx, m.tokS]);
    drawSweep();
  },
  [Reply.finished](m) {
    updateInfo(m.info);
    to('ready');
  },
  [Reply.error](m) {
    progress(null);
    if (m.fatal) {
      // The wasm module aborted: start a fresh worker; the model must be loaded again.
      fail(`${m.message}. The engine was restarted: load a model (a smaller one if memory ran out).`);
      restartWorker();
    } else {
      fail(m.message);
      if (m.request === Request.generate) failReply();
      settle();
    }
  },
};

// The worker itself failed (not a request: an error outside them).
function crashed(message) {
  fail(`The inference worker crashed: ${message}. Load a model again.`);
  restartWorker();
}

function updateInfo(info) {
  setInfo(info);
  showInfo();
  drawHeads($('method').value);
  const layers = $('probe-layer');
  if (layers.options.length !== info.layers) {
    layers.innerHTML = '';
    for (let l = 0; l < info.layers; l++) layers.add(new Option(String(l), l));
  }
}

// The attention probe's record of the chosen layer (a reply 'attention' draws it).
function requestAttention() {
  send(Request.attention, { layer: Number($('probe-layer').value) || 0 });
}

function restartWorker() {
  to('restarting');
  failReply();
  state.info = null;
  $('probe').checked = false;
  state.worker = startWorker(replies, crashed);
}

// ---------- requests ----------


// The settings of a shared link (exports.js) into the controls; returns the G to convert
// the model to once loaded (null without one).
function restoreFromLink() {
  const link = settingsFromUrl();
  for (const [key, id] of [['method', 'method'], ['context', 'context'], ['prompt', 'prompt'], ['seed', 'seed']]) {
    if (link[key] !== undefined) $(id).value = link[key];
  }
  if (link.context !== undefined) $('context').dataset.chosen = '1';
  if (link.model !== undefined) {
    // ?model=URL: a GGUF file by link (the kept copy when there is one).
    if (isLink(link.model)) pickLink(link.model);
    if ([...$('model-select').options].some((o) => o.value === link.model)) $('model-select').value = link.model;
    else fail(`the link's model "${link.model}" is not offered on this page; the default model is loaded instead`);
  }
  const g = Number(link.g);
  return Number.isInteger(g) && g > 0 ? g : null;
}

// Convert to g key/value heads; unless g is the model's own, the worker then measures it
// against the model's own G on the fixed probe (quality.js).
function convert(g) {
  const text = g === state.info.baseKvHeads ? null : probe();
  expectQuality(g);
  to('converting', { probe: !!text });
  send(Request.setGroups, { g, method: $('method').value, seed: seed(), probe: text });
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

// The shipped quality table's row for a compare row: an uptrained checkpoint's own row, or
// the shipped base as loaded or converted on the fly. Null elsewhere (then the live quality).
function shippedQuality({ g, checkpoint }) {
  if (checkpoint) return sources.folderVariant(state.shipped, checkpoint);
  if (!state.onShippedBase) return null;
  return sources.tableVariant(state.shipped, g, $('method').value, state.info.baseKvHeads);
}

function generate() {
  clearError();
  startRun($('prompt').value);
  to('generating');
  send(Request.generate, { prompt: $('prompt').value, params: params() });
}

// The chat's Send: the message joins the conversation, and the reply's prompt is all of it.
function chatSend() {
  clearError();
  const text = $('chat-input').value.trim();
  if (!text) return fail('write a message first');
  $('chat-input').value = '';
  startRun('');
  to('generating');
  send(Request.generate, { prompt: ask(text), params: params() });
}

// The context to compare at, or an error in words: within the model's trained context
// and the KV cache this tab holds.
function compareContext() {
  const info = state.info;
  const raw = $('context').value.trim();
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < 32) return { error: `the context must be a whole number of positions, at least 32 (got "${raw}")` };
  if (n > info.context) return { error: `this model was trained for at most ${info.context} positions: choose a context of ${info.context} or less (got ${n})` };
  if (n > info.capacity) {
    return { error: `the KV cache of this tab holds ${info.capacity} positions (the memory budget for this model): choose a context of ${info.capacity} or less (got ${n})` };
  }
  return { context: n };
}

// The uptrained checkpoints of the shipped family to compare beside the loaded model's G
// choices: fetched here (cached), each loaded by the worker for its row.
async function checkpointsToCompare() {
  if (!state.onShipped) return [];
  const wanted = Object.entries(state.shipped.uptrained)
    .map(([g, dir]) => ({ g: Number(g), dir }))
    .filter(({ g, dir }) => dir !== state.loaded.dir && state.groupsToCompare.includes(g))
    .sort((a, b) => b.g - a.g);
  return Promise.all(wanted.map(async ({ g, dir }) => ({ g, dir, source: await sources.shippedSource(dir) })));
}

async function compareAll() {
  clearError();
  const { context, error } = compareContext();
  if (error) return fail(error);
  const mode = $('context-mode').value;
  clearCompare();
  to('comparing');
  try {
    const checkpoints = await checkpointsToCompare();
    $('compare-label').textContent = `Measured on ${engineLabel(state.info.backend)}, at ${mode === 'real' ? 'a real' : 'a synthetic'} context of ${context} positions` +
      (mode === 'real' ? ' (generated from the prompt; tok/s over the last 48 tokens).' : ' (KV cache filled with synthetic values; median of 47 timed steps; then each row timed four more times in interleaved rounds, and the fastest of the five shown: a shared machine only ever slows a round down).');
    // 'each': every precision in turn, f32 first (its MHA row is the quality reference).
    state.comparingPrecisions = $('compare-kv').value === 'each';
    // A chat model answers the conversation's last question in every row.
    send(Request.compare, {
      prompt: state.info.chat ? lastQuestion() : $('prompt').value, params: params(), groups: state.groupsToCompare, method: $('method').value, seed: seed(),
      context, mode, checkpoints, kvDtypes: state.comparingPrecisions ? ['f32', 'f16', 'int8'] : null,
    }, checkpoints.map((c) => c.source.weights));
  } catch (e) {
    settle();
    fail(e.message);
  }
}

function sweep() {
  clearError();
  state.sweep = {};
  to('sweeping');
  const cap = state.info.capacity;
  const contexts = [...new Set([...SWEEP_CONTEXTS.filter((c) => c > SWEEP_STEPS && c < cap), cap])];
  $('sweep-label').textContent = `Measured on ${engineLabel(state.info.backend)}, synthetic context (KV cache filled with synthetic values), ${SWEEP_STEPS - 1} timed steps per point.`;
  send(Request.sweep, { groups: state.groupsToCompare, contexts, steps: SWEEP_STEPS, method: $('method').value, seed: seed() });
}

function switchBackend() {
  to('switching');
  send(Request.backend, { want: $('backend').value });
}

function switchKvDtype() {
  clearError();
  to('switching');
  send(Request.kvDtype, { dtype: $('kv-dtype').value });
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
  for (const id of ['generate', 'chat-send', 'compare-btn', 'compare-kv', 'sweep-btn', 'g-select', 'method', 'backend', 'kv-dtype', 'context', 'context-mode',
    'export-json', 'export-csv', 'export-png', 'share-link', 'probe', 'probe-layer']) $(id).disabled = !ready;
  $('load-btn').disabled = !can('loading');
  enableLinks(can('loading'));
  $('stop').disabled = !state.busy;
  $('chat-stop').disabled = !state.busy;
  $('chat-new').disabled = state.busy;
  showUptrained();
}

// The picker: the real models the server has first (the page opens on the first), then the
// shipped family and the presets. Without a real model, one line says how to get one.
async function fillModelPicker() {
  const [shipped, real] = await Promise.all([sources.discoverShipped(), sources.discoverReal()]);
  state.shipped = shipped;
  for (const [label, value] of sources.pickerChoices(shipped, real)) $('model-select').add(new Option(label, value));
  const missing = sources.REAL_MODELS.filter((m) => !real.includes(m));
  $('model-hint').hidden = missing.length === 0;
  $('model-hint').textContent = missing.map((m) => `${m.label.replace(/ \(.*/, '')} is not on this server: \`${m.fetch}\` puts it in www/models/, then reload.`).join(' ');
}

function wire() {
  $('load-btn').onclick = () => loadSelected();
  wireLinks(loadLink);
  $('file-input').onchange = (e) => loadFiles(e.target.files);
  const drop = $('drop-zone');
  drop.ondragover = (e) => { e.preventDefault(); drop.classList.add('over'); };
  drop.ondragleave = () => drop.classList.remove('over');
  drop.ondrop = (e) => { e.preventDefault(); drop.classList.remove('over'); loadFiles(e.dataTransfer.files); };
  $('g-select').onchange = () => { showUptrained(); applyGroups(); };
  $('method').onchange = applyGroups;
  $('uptrained').onchange = applyGroups;
  $('backend').onchange = switchBackend;
  $('kv-dtype').onchange = switchKvDtype;
  // ?kv=f32|f16|int8 opens the page with that precision (the worker reads it too).
  const kv = new URLSearchParams(location.search).get('kv');
  if (kv) $('kv-dtype').value = kv;
  $('generate').onclick = generate;
  $('stop').onclick = () => send(Request.stop);
  $('chat-send').onclick = chatSend;
  $('chat-stop').onclick = () => send(Request.stop);
  $('chat-new').onclick = newChat;
  // Enter sends; Shift+Enter starts a new line.
  $('chat-input').onkeydown = (e) => {
    if (e.key === 'Enter' && !e.shiftKey) {
      e.preventDefault();
      if (!$('chat-send').disabled) chatSend();
    }
  };
  $('context').oninput = () => { $('context').dataset.chosen = '1'; };
  $('compare-btn').onclick = compareAll;
  $('sweep-btn').onclick = sweep;
  $('export-json').onclick = exportJson;
  $('export-csv').onclick = exportCsv;
  $('export-png').onclick = exportPng;
  $('share-link').onclick = shareLink;
  $('probe').onchange = () => send(Request.setAttentionProbe, { on: $('probe').checked });
  $('probe-layer').onchange = requestAttention;
  $('attention-chart').onmousemove = describeCell;
  $('attention-chart').onclick = describeCell;
  watch(showControls);
}

wire();
showControls();
const pickerFilled = fillModelPicker();
// On a host without COOP/COEP headers, first reload under the isolation service worker.
if (!(await becomeIsolated())) {
  state.worker = startWorker(replies, crashed);
  pickerFilled.then(prefetchOpening);
}
