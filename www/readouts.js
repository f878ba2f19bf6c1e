// readouts.js: draws what the page reports (model, speed, KV bar, compare table, sweep) from the state.
import { plot, color } from './charts.js';
import { notice } from './notices.js';
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

// A G choice in the picker: beside the plain label, the model's native G and what a G
// above it is (each key/value head repeated: the same model, with MHA's cache).
function choiceLabel(g, info) {
  const { nHeads: h, baseKvHeads: base } = info;
  if (state.onShipped || base === h) return groupLabel(g, h);
  if (g === base) return `${groupLabel(g, h)} (native)`;
  if (g > base) return `${groupLabel(g, h)}: the same model, heads repeated ${g / base}x`;
  return `${groupLabel(g, h)}: pooled from ${base}`;
}

// Which engine produced a speed figure: WebGPU's adapter, or the CPU engine's SIMD and threads.
export function engineLabel(backend) {
  return /gpu/i.test(backend) ? `WebGPU (${backend})` : `the CPU (${backend}, ${threadsLabel()})`;
}

// The loaded model (state.info): the G choices, its description, sizes, backend and KV cache.
export function showInfo() {
  const info = state.info;
  const sel = $('g-select');
  sel.innerHTML = '';
  for (const g of state.groupChoices) {
    const o = new Option(choiceLabel(g, info), g);
    o.selected = g === info.nKvHeads;
    sel.add(o);
  }
  $('model-info').textContent =
    `${(info.params / 1e6).toFixed(2)}M params, ${info.layers} layers, H = ${info.nHeads} query heads of size ${info.headDim}, ` +
    `loaded with ${info.baseKvHeads} key/value heads, context ${info.context}, vocabulary ${info.vocab}` +
    (info.hasTokenizer ? '' : ' (no tokenizer: the output shows token ids)');
  const perPosition = { f32: 4, f16: 2 }[info.kvDtype];
  const mhaFull = info.kvBytesPerPositionMha * info.capacity;
  $('kv-capacity').textContent = `KV cache: room for ${info.capacity} of the model's ${info.context} positions in ${info.kvDtype}` +
    `${state.loaded?.capacityWhy ? ` (${state.loaded.capacityWhy})` : ''}: ${fmtBytes(info.kvBytesPerPosition * info.capacity)} when full at ` +
    `G = ${info.nKvHeads}, ${fmtBytes(mhaFull)} at MHA (G = ${info.nHeads})${perPosition ? `, ${perPosition} bytes per number` : ''}.` +
    (info.kvWhy ? ` Not what the page asked for, to fit this tab's memory: ${info.kvWhy}.` : '');
  $('weight-bytes').textContent = fmtBytes(info.weightBytes);
  $('backend-used').textContent = info.backend;
  showKv();
}

// The KV cache for this G beside MHA's, at the context the last generation used (before any,
// the full context). Both bars are drawn to the scale of MHA's cache at full capacity, so
// during a generation they grow token by token, G's H/G times slower than MHA's.
function showKv() {
  const info = state.info;
  const ctx = state.contextUsed || info.capacity;
  const bytes = info.kvBytesPerPosition * ctx;
  const mha = info.kvBytesPerPositionMha * ctx;
  // The scale: f32 MHA's cache, so that the bars show G and precision multiplying.
  const full = info.kvBytesPerPositionMhaF32 * info.capacity;
  $('kv-g').textContent = `${info.nKvHeads}, context ${ctx}${state.contextUsed ? '' : ' (full)'}`;
  $('kv-bytes').dataset.context = ctx;
  $('kv-bytes').textContent = fmtBytes(bytes);
  $('kv-bytes').dataset.bytes = bytes;
  $('kv-bytes-mha').textContent = fmtBytes(mha);
  $('kv-bytes-mha').dataset.bytes = mha;
  $('kv-bar-mha').style.width = `${(100 * mha) / full}%`;
  $('kv-bar').style.width = `${(100 * bytes) / full}%`;
  $('kv-scale').textContent = `bars: share of an f32 MHA cache at the full ${info.capacity} positions (${fmtBytes(full)}); ` +
    `this cache keeps ${info.kvDtype}: ${info.kvBytesPerPosition} bytes per position against f32 MHA's ${info.kvBytesPerPositionMhaF32}`;
  $('context-used').textContent = `${state.contextUsed} / ${info.capacity}`;
}

// A generation starts: the output shows the prompt, the speed readout waits.
export function startRun(prompt) {
  $('output').textContent = prompt;
  state.run = { times: [], points: [], streamed: '' };
  $('tok-s').textContent = '…';
  $('tok-s-label').textContent = `on ${engineLabel(state.info.backend)}, real context`;
  delete $('tok-s').dataset.final;
  state.contextUsed = 0;
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
  $('compare-summary').textContent = '';
}

// A new model: the comparisons and sweeps of the last one no longer apply.
export function clearResults() {
  clearCompare();
  state.sweep = {};
  state.attention = null;
  for (const id of ['quality-chart', 'figure6-chart', 'attention-chart', 'sweep-chart', 'sweep-kv-chart']) $(id).getContext('2d').clearRect(0, 0, $(id).width, $(id).height);
}

// A compare-all-G row (see the worker's compare). table: the shipped quality table's row
// for it (validation text, short and long windows), else null and the live quality
// m.quality (KL and top-1 agreement against the unconverted model on its own text).
export function addCompareRow(m, table) {
  const uptrained = !!m.checkpoint;
  // A real generation that ended (end of text) before the context says where it was timed.
  const early = m.context < m.requested ? ` (ended at ${m.context} positions)` : '';
  const precision = state.comparingPrecisions ? `, ${m.kvDtype} KV` : '';
  const base = state.info.baseKvHeads;
  const made = uptrained ? ' uptrained' : m.g === base ? (base < m.nHeads ? ' (native)' : '') : m.g > base ? ' (heads repeated)' : ' converted';
  const label = `${groupLabel(m.g, m.nHeads)}${made}${precision}${early}`;
  const msPerToken = 1000 / m.tokS;
  state.compare.push({ ...m, label, uptrained, msPerToken, table });
  const row = $('compare-table').tBodies[0].insertRow();
  row.dataset.g = m.g;
  row.dataset.kv = m.kvDtype;
  row.dataset.kind = uptrained ? 'uptrained' : 'converted';
  row.dataset.tokS = m.tokS;
  row.dataset.bytesPerToken = m.bytesPerToken;
  const pct = (x) => (x != null ? `${(100 * x).toFixed(1)}%` : '–');
  const nats = (e) => (e ? e.nats_per_token.toFixed(3) : '–');
  const quality = table
    ? `${nats(table.eval)} / ${nats(table.eval_long)} nats/token; KL ${table.eval.kl_vs_base?.toFixed(3) ?? '0'}, top-1 ${pct(table.eval.top1_agreement ?? 1)} (table)`
    : m.quality ? `KL ${m.quality.kl_vs_base.toFixed(4)}, top-1 ${pct(m.quality.top1_agreement)} (live)` : '–';
  const cells = [label, m.kvDtype, m.tokS.toFixed(1), msPerToken.toFixed(3), fmtBytes(m.kvBytes), fmtBytes(m.bytesPerToken - m.kvBytes), fmtBytes(m.bytesPerToken), quality, m.text.slice(0, 160)];
  cells.forEach((c, i) => {
    const td = row.insertCell();
    td.textContent = c;
    if (i === cells.length - 1) td.className = 'text';
  });
  drawFigures();
}

// A further round of compare timed the row at `index`: show the fastest of its rounds.
export function updateCompareSpeed({ index, tokS, rounds }) {
  const r = state.compare[index];
  if (!r) return;
  Object.assign(r, { tokS, msPerToken: 1000 / tokS, rounds });
  const row = $('compare-table').tBodies[0].rows[index];
  row.dataset.tokS = tokS;
  row.cells[2].textContent = tokS.toFixed(1);
  row.cells[3].textContent = r.msPerToken.toFixed(3);
  drawFigures();
}

function drawFigures() {
  drawFigure3();
  drawFigure6();
  showCompareSummary();
}

// Under the table: how much faster MQA decoded than MHA against how many fewer bytes it
// read (the converted rows of the first KV precision compared), and why the two can differ:
// grouping removes bytes, not attention arithmetic.
function showCompareSummary() {
  const rows = state.compare.filter((r) => !r.uptrained && r.kvDtype === state.compare[0]?.kvDtype);
  const { nHeads: h, headDim: hd, layers } = state.info;
  const mha = rows.find((r) => r.g === h);
  const mqa = rows.find((r) => r.g === 1);
  if (!mha || !mqa || mha === mqa) return;
  const macs = (2 * h * mqa.context * hd * layers) / 1e6;
  $('compare-summary').textContent =
    `MQA read ${(mha.bytesPerToken / mqa.bytesPerToken).toFixed(2)}x fewer bytes per token than MHA here, and decoded ` +
    `${(mqa.tokS / mha.tokS).toFixed(2)}x as fast. Grouping cuts the bytes each token reads, not the attention arithmetic: ` +
    `every G still multiplies all ${h} query heads against all ${mqa.context} positions, ${macs.toFixed(1)} million ` +
    'multiply-adds per token here. Where the KV cache comes from memory (long contexts, large models, GPUs) speed follows ' +
    "the bytes; where the processor's caches hold it, or the arithmetic is slow (WebAssembly: 4 lanes per instruction, " +
    `${String(state.simd).includes('relaxed') ? 'fused multiply-add only through relaxed SIMD' : 'no fused multiply-add in this build'}), ` +
    'the arithmetic sets a floor that is the same for every G.';
}

// The paper's Figure 6: time per token against G at one context (the converted rows as a line,
// the uptrained checkpoints as another), a pair of lines per KV precision compared: fewer
// key/value heads, less time; fewer bytes per element, less again.
function drawFigure6() {
  const rows = state.compare;
  const series = [];
  for (const kv of [...new Set(rows.map((r) => r.kvDtype))]) {
    for (const uptrained of [false, true]) {
      const points = rows.filter((r) => r.uptrained === uptrained && r.kvDtype === kv).map((r) => [r.g, r.msPerToken]).sort((a, b) => a[0] - b[0]);
      const label = `${uptrained ? 'uptrained' : 'converted'}${state.comparingPrecisions ? `, ${kv} KV` : ''}`;
      if (points.length) series.push({ label, color: color(series.length), points });
    }
  }
  plot($('figure6-chart'), series, { xLabel: 'G, key/value heads (MQA = 1 ... MHA = H)', yLabel: 'time per token (ms)' });
}

// The paper's Figure 3: quality against time per token, one point per row; converted points
// hollow, uptrained ones filled. Quality: the table's validation loss (long windows where the
// table has them) when every row has it, else the live top-1 agreement.
function drawFigure3() {
  const rows = state.compare;
  const fromTable = rows.every((r) => r.table);
  const long = fromTable && rows.every((r) => r.table.eval_long);
  const y = (r) => (fromTable ? (long ? r.table.eval_long : r.table.eval).nats_per_token : r.quality ? 100 * r.quality.top1_agreement : null);
  const series = rows
    .filter((r) => y(r) != null)
    .map((r) => ({ label: r.label, color: color(Math.log2(r.g)), hollow: !r.uptrained, points: [[r.msPerToken, y(r)]] }));
  plot($('quality-chart'), series, {
    scatter: true,
    xLabel: 'time per token (ms): left is faster',
    yLabel: fromTable ? `validation loss${long ? ', long windows' : ''} (nats/token): lower is better` : 'top-1 agreement with the unconverted model (%)',
    yFromZero: !fromTable,
  });
}

// The sweep: tok/s and KV-cache bytes against context, one line per G.
export function drawSweep() {
  const { nHeads: h, kvBytesPerPositionMha: mha } = state.info;
  const entries = Object.entries(state.sweep).map(([g, points]) => [Number(g), points]).sort((a, b) => b[0] - a[0]);
  const series = entries.map(([g, points]) => ({ label: groupLabel(g, h), color: color(Math.log2(g)), points }));
  plot($('sweep-chart'), series, { xLabel: 'context length (positions)', yLabel: 'decode tok/s' });
  const kv = entries.map(([g, points]) => ({
    label: groupLabel(g, h), color: color(Math.log2(g)), points: points.map(([ctx]) => [ctx, (mha * g * ctx) / h / 2 ** 20]),
  }));
  plot($('sweep-kv-chart'), kv, { xLabel: 'context length (positions)', yLabel: 'KV cache (MiB)' });
}

const threadsLabel = () => (state.threads === 1 ? '1 thread' : `${state.threads} threads`);

export function showBackendNote() {
  const gpu = state.webgpu;
  const lines = [gpu?.available ? `WebGPU available: ${gpu.reason}${gpu.software ? ' (software fallback adapter)' : ''}.` : `WebGPU unavailable: ${gpu?.reason ?? 'unknown'}.`];
  lines.push(`CPU engine: ${state.simd}, ${threadsLabel()} (${state.threadsWhy}).`);
  if (state.backendReason) lines.push(`Running on ${state.onGpu ? 'WebGPU' : 'the CPU'}: ${state.backendReason}.`);
  if (state.onGpu && state.info?.kvDtype === 'f16') {
    lines.push('WebGPU keeps the KV cache in f16 (half the bytes of the CPU engine\'s f32), so sampled text can part from ' +
      'the CPU\'s for the same seed where two tokens are nearly tied; open the page with ?kv=f32 to keep both in f32.');
  }
  $('backend-note').textContent = lines.join(' ');
}
