// exports.js: keeping results: the run as JSON, the compare table as CSV, each chart as PNG,
// and a link that reopens the page with the same settings (settingsFromUrl reads it back).
import { state } from './state.js';

const $ = (id) => document.getElementById(id);

// The settings a link carries, as the page's controls hold them.
const SETTINGS = { model: 'model-select', g: 'g-select', method: 'method', kv: 'kv-dtype', context: 'context', prompt: 'prompt', seed: 'seed' };

function download(name, blob) {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}

const settings = () => Object.fromEntries(Object.entries(SETTINGS).map(([k, id]) => [k, $(id).value]));

// Everything measured for the loaded model: its description, the settings, the compare rows
// (with their quality) and the sweep's points.
export function exportJson() {
  const compare = state.compare.map(({ label, g, kvDtype, uptrained, context, tokS, msPerToken, kvBytes, bytesPerToken, rounds, quality, table, text }) =>
    ({ label, g, kvDtype, uptrained, context, tokS, msPerToken, kvBytes, bytesPerToken, rounds, quality, table, text }));
  const run = { page: location.href.split('?')[0], settings: settings(), model: state.info, compare, sweep: state.sweep, lastGeneration: state.lastStats };
  download('gqa-lab-results.json', new Blob([JSON.stringify(run, null, 2)], { type: 'application/json' }));
}

// The compare table, one line per row.
export function exportCsv() {
  const head = ['label', 'g', 'kv_dtype', 'uptrained', 'context', 'tok_s', 'ms_per_token', 'kv_bytes', 'weight_bytes', 'bytes_per_token', 'kl_vs_base', 'top1_agreement'];
  const quoted = (v) => (/[",\n]/.test(String(v)) ? `"${String(v).replaceAll('"', '""')}"` : String(v));
  const lines = state.compare.map((r) => {
    const q = r.table ? { kl: r.table.eval.kl_vs_base ?? 0, top1: r.table.eval.top1_agreement ?? 1 } : { kl: r.quality?.kl_vs_base ?? '', top1: r.quality?.top1_agreement ?? '' };
    return [r.label, r.g, r.kvDtype, r.uptrained, r.context, r.tokS, r.msPerToken, r.kvBytes, r.bytesPerToken - r.kvBytes, r.bytesPerToken, q.kl, q.top1].map(quoted).join(',');
  });
  download('gqa-lab-compare.csv', new Blob([[head.join(','), ...lines].join('\n') + '\n'], { type: 'text/csv' }));
}

// Each chart with something drawn, as a PNG file.
export async function exportPng() {
  for (const id of ['speed-chart', 'quality-chart', 'figure6-chart', 'sweep-chart', 'sweep-kv-chart']) {
    const blob = await new Promise((resolve) => $(id).toBlob(resolve, 'image/png'));
    if (blob) download(`gqa-lab-${id}.png`, blob);
  }
}

// A link to this page with the current settings, shown to copy (and copied where allowed).
export function shareLink() {
  const url = new URL(location.href.split('?')[0]);
  for (const [k, v] of Object.entries(settings())) if (v !== '') url.searchParams.set(k, v);
  const test = new URLSearchParams(location.search).get('test');
  if (test) url.searchParams.set('test', test);
  $('share-url').hidden = false;
  $('share-url').value = url.href;
  $('share-url').select();
  navigator.clipboard?.writeText(url.href).catch(() => {});
  return url.href;
}

// The settings a link carries ({} without any): each control's value, applied by the caller.
export function settingsFromUrl() {
  const p = new URLSearchParams(location.search);
  return Object.fromEntries(Object.keys(SETTINGS).filter((k) => p.has(k)).map((k) => [k, p.get(k)]));
}
