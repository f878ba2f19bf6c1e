// G x KV precision on one model: bytes per token, decode tok/s and quality against the f32 base.
//
//   node scripts/kv-precision.mjs [--model www/models/mha] [--context 2048] [--threads 1]
//                                 [--text ../shared/data/tinystories/val.txt] [--tokens 8192]
//
// For each KV precision (f32, f16, int8), `gqa bench` times every G at the context (one
// thread by default, so the ratios are the engine's, not the scheduler's; the three
// precisions' benches alternate three times and each row takes its median, so that a slow
// spell of a shared machine slows every precision alike), and for each G
// `gqa eval --vs-base` scores the text with windows of the context advancing by half, only
// each window's second half scored (the model card's long protocol), against the
// unconverted model with an f32 KV cache. Prints one Markdown table. Needs a release build
// (cargo build --release); runs about five minutes on two cores.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { median } from './support.mjs';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, a, i, all) => (a.startsWith('--') ? [...pairs, [a.slice(2), all[i + 1]]] : pairs), []),
);
const model = args.model ?? 'www/models/mha';
const context = Number(args.context ?? 2048);
const threads = args.threads ?? '1';
const text = args.text ?? '../shared/data/tinystories/val.txt';
const tokens = args.tokens ?? '8192';
const gqa = 'target/release/gqa';
for (const [what, path] of [['the release build (cargo build --release)', gqa], ['the model', model], ['the text', text]]) {
  if (!existsSync(path)) {
    console.error(`kv-precision: ${what} is missing: ${path}`);
    process.exit(2);
  }
}
const run = (cmd) => JSON.parse(execFileSync(gqa, [...cmd, '--json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }));

const PRECISIONS = ['f32', 'f16', 'int8'];
const benches = Object.fromEntries(PRECISIONS.map((kv) => [kv, []]));
for (let round = 0; round < 3; round++) {
  for (const kv of PRECISIONS) {
    benches[kv].push(run(['bench', '--model', model, '--contexts', String(context), '--kv-dtype', kv, '--threads', threads, '--steps', '48', '--rounds', '3']));
  }
}
const bandwidth = benches.f32[0];
const rows = [];
for (const kv of PRECISIONS) {
  for (const [i, row] of benches[kv][0].rows.entries()) {
    const r = { ...row, decode_tok_s: median(benches[kv].map((b) => b.rows[i].decode_tok_s)) };
    const quality = run(['eval', '--model', model, '-g', String(r.n_kv_heads), '--kv-dtype', kv, '--vs-base', '--text', text,
      '--window', String(context), '--score-from', String(context / 2), '--max-tokens', tokens]);
    rows.push({ g: r.n_kv_heads, kv, ...r, quality });
    console.error(`${r.label} ${kv}: ${r.decode_tok_s.toFixed(0)} tok/s, KL ${quality.kl_vs_base.toFixed(4)}`);
  }
}
rows.sort((a, b) => b.g - a.g || a.bytes_per_token - b.bytes_per_token);
const base = rows.find((r) => r.kv === 'f32' && r.g === Math.max(...rows.map((x) => x.g)));
const mb = (b) => (b / 1e6).toFixed(2);
const kl = (x) => (Math.abs(x) < 0.01 ? x.toExponential(1) : x.toFixed(4));
console.log(`${model}, context ${context}, ${bandwidth.backend}, ${bandwidth.threads} thread(s); ` +
  `read bandwidth ${bandwidth.read_gb_s.toFixed(1)} GB/s; tok/s: median of 3 alternating runs per precision; ` +
  `quality: ${rows[0].quality.tokens} tokens of ${text}\n`);
console.log('| G | KV | MB/token (weights + KV) | bytes vs f32 MHA | tok/s | tok/s vs f32 MHA | KL vs f32 MHA (nats/token) | top-1 agreement |');
console.log('|---|---|---:|---:|---:|---:|---:|---:|');
for (const r of rows) {
  console.log(`| ${r.label} | ${r.kv} | ${mb(r.weight_bytes_per_token)} + ${mb(r.kv_bytes_per_token)} | ${(r.bytes_per_token / base.bytes_per_token).toFixed(2)} | ` +
    `${r.decode_tok_s.toFixed(0)} | ${(r.decode_tok_s / base.decode_tok_s).toFixed(2)} | ${kl(r.quality.kl_vs_base)} | ${(100 * r.quality.top1_agreement).toFixed(1)}% |`);
}
