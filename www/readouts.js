// readouts.js: draws what the page reports (model, speed, KV bar, compare table, sweep) from the state.
import { plot, color } from './charts.js';
import { notice } from './messages.js';
import { state } from './state.js';

const $ = (id) => document.getElementById(id);

export function fmtBytes(b) {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  let v = b;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v.toFixed(i ? 2 : 0)} ${units[i]}`;
}

const groupLabel = (g, h) => (g === h ? `MHA (G=${g})` : g === 1 ? 'MQA (G=1)' : `GQA-${g}`);

// The loaded model (state.info): the G choices, its description, sizes, backend and KV cache.
export function showInfo() {
  const info = state.info;
  const sel = $('g-select');
  sel.innerHTML = '';
  for (const g of state.groupChoices) {
    const o = new Option(groupLabel(g, info.n_heads), g);
    o.selected = g === info.n_kv_heads;
    sel.add(o);
  }
  $('model-info').textContent =
    `${(info.params / 1e6).toFixed(2)}M params, ${info.layers} layers, H = ${info.n_heads} query heads of size ${info.head_dim}, ` +
    `loaded with ${info.base_kv_heads} key/value heads, context ${info.context}, vocabulary ${info.vocab}` +
    (info.has_tokenizer ? '' : ' (no tokenizer: the output shows token ids)');
  $('weight-bytes').textContent = fmtBytes(info.weight_bytes);
  $('backend-used').textContent = info.backend;
  showKv();
}

// The KV cache for this G beside MHA's, at the context the last generation used (before any, the full context).
function showKv() {
  const info = state.info;
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

// A generation starts: the output shows the prompt, the speed readout waits.
export function startRun(prompt) {
  $('output').textContent = prompt;
  state.run = { times: [], points: [], streamed: '' };
  $('tok-s').textContent = '…';
  delete $('tok-s').dataset.final;
}

const drawSpeed = () => plot($('speed-chart'), [{ label: 'tok/s', points: state.run.points }], { xLabel: 'token', yLabel: 'tok/s' });

// A streamed token: its text, the rate "now" (over the last 8 tokens) and, on the CPU, the statistics.
export function showToken(text, stats) {
  const run = state.run;
  const now = performance.now();
  run.times.push(now);
  const k = Math.min(8, run.times.length - 1);
  if (k > 0 && run.times.length > 2) {
    const rate = (1000 * k) / (now - run.times[run.times.length - 1 - k]);
    $('tok-s').textContent = rate.toFixed(1);
    run.points.push([run.times.length, rate]);
    if (run.times.length % 4 === 0) drawSpeed();
  }
  run.streamed += text;
  appendOutput(text);
  if (stats) showStats(stats); // WebGPU: statistics come at the end
}

// The generation ended: the final statistics (none when the GPU was lost) and any text not streamed yet.
export function showDone(text, stats) {
  if (stats) {
    $('tok-s').textContent = stats.decode_tok_s.toFixed(1);
    $('tok-s').dataset.final = stats.decode_tok_s;
    drawSpeed();
    notice(`${stats.generated_tokens} tokens, ${stats.decode_tok_s.toFixed(1)} tok/s on ${stats.backend} (stopped: ${stats.stop_reason}).`);
    showStats(stats);
  }
  appendOutput(text.slice(state.run.streamed.length));
}

function showStats(stats) {
  $('prefill').textContent = `${stats.prefill_ms.toFixed(1)} ms (${stats.prompt_tokens} tokens)`;
  state.contextUsed = stats.context_used;
  showKv();
}

function appendOutput(text) {
  if (text) $('output').append(text);
}

export function clearCompare() {
  state.compare = [];
  $('compare-table').tBodies[0].innerHTML = '';
}

// A new model: the comparisons and sweeps of the last one no longer apply.
export function clearResults() {
  clearCompare();
  state.sweep = {};
  for (const id of ['quality-chart', 'sweep-chart']) $(id).getContext('2d').clearRect(0, 0, $(id).width, $(id).height);
}

// A compare-all-G row; q: quality against the unconverted model, from `source` ('table' or 'live').
export function addCompareRow({ g, text, stats }, q, source) {
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

export function drawSweep() {
  const h = state.info.n_heads;
  const series = Object.entries(state.sweep).map(([g, points]) => ({ label: groupLabel(Number(g), h), points }));
  plot($('sweep-chart'), series, { xLabel: 'context length', yLabel: 'decode tok/s' });
}

export function showBackendNote() {
  const gpu = state.webgpu;
  const lines = [gpu?.available ? `WebGPU available: ${gpu.reason}${gpu.software ? ' (software fallback adapter)' : ''}.` : `WebGPU unavailable: ${gpu?.reason ?? 'unknown'}.`];
  lines.push(`CPU engine: ${state.simd}, one thread.`);
  if (state.backendReason) lines.push(`Running on ${state.onGpu ? 'WebGPU' : 'the CPU'}: ${state.backendReason}.`);
  $('backend-note').textContent = lines.join(' ');
}
