// A peer you can rerun: llama.cpp's wasm build (npm @wllama/wllama) and this page's
// engine on the same model, same prompt, greedy, in headless Chromium, at 1 and at N
// threads. A model folder is exported with `gqa convert --format gguf`, so the run also
// checks the export: both must write the same greedy text. A .gguf file (e.g. SmolLM2's,
// from scripts/fetch-model.sh smollm2) is given to both engines as it is, quantized
// weights and all: wllama loads it, and the page's engine opens the same bytes with
// Session.fromGguf (browser-engine.mjs's fetchGguf); groups and dtype do not apply to it.
//
//   cargo build --release && bash scripts/build-web.sh
//   node scripts/bench-peer.mjs [model=www/models/mha] [groups=keep] [dtype=f32] [tokens=128] [threads=2] [random]
//   node scripts/bench-peer.mjs www/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf '' '' 128 2
//
// Prints each engine's decode tok/s (llama.cpp's own timing of its predicted tokens;
// ours from the session's stats, also decode only) and whether the texts agree.
// `random`, for a random-weight model (examples/random_model.rs): its greedy tokens are
// arbitrary, and wllama 3.13 fails on a token that is not a whole UTF-8 character
// ("invalid UTF-8 byte"), so llama.cpp is barred from those tokens (logit_bias) and only
// the speeds are compared; the work per token is the same whichever token comes out.
import { execFileSync } from 'node:child_process';
import { copyFileSync, cpSync, linkSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openLab } from './browser-engine.mjs';

const [model = 'www/models/mha', groups = '', dtype = 'f32', tokens = '128', threads = '2', random = ''] = process.argv.slice(2);
const root = fileURLToPath(new URL('..', import.meta.url));
const PROMPT = 'Once upon a time';
// A GGUF file runs as stored, for both engines.
const gguf = model.endsWith('.gguf');
if (gguf && (groups || random)) {
  console.error('a .gguf model runs as stored: no groups, no random (convert a model folder for those)');
  process.exit(2);
}

// The GGUF and llama.cpp's wasm build go into www/peer/ (ignored by git), so the demo
// server serves them from the page's origin.
const peer = join(root, 'www/peer');
rmSync(peer, { recursive: true, force: true });
mkdirSync(peer, { recursive: true });
const wllama = dirname(createRequire(import.meta.url).resolve('@wllama/wllama/package.json'));
cpSync(join(wllama, 'esm'), join(peer, 'wllama'), { recursive: true });
if (gguf) {
  // The file itself (a hard link where it can be, else a copy), served as /peer/model.gguf.
  try {
    linkSync(resolve(model), join(peer, 'model.gguf'));
  } catch {
    copyFileSync(resolve(model), join(peer, 'model.gguf'));
  }
} else {
  const g = groups ? ['--groups', groups] : [];
  execFileSync(join(root, 'target/release/gqa'), ['convert', '--model', model, ...g, '--dtype', dtype, '--format', 'gguf', '--out', join(peer, 'model.gguf')], { stdio: 'inherit' });
}

// GPT-2's byte-level alphabet: each byte is one character; a token's bytes are its characters'.
function byteOf() {
  const printable = [...range(33, 126), ...range(161, 172), ...range(174, 255)];
  const map = new Map(printable.map((b) => [String.fromCharCode(b), b]));
  let extra = 0;
  for (let b = 0; b < 256; b++) if (!printable.includes(b)) map.set(String.fromCharCode(256 + extra++), b);
  return map;
}
function* range(a, b) {
  for (let i = a; i <= b; i++) yield i;
}
// Token ids whose bytes are not whole UTF-8 characters (for `random`).
function partialUtf8Tokens() {
  const vocab = JSON.parse(readFileSync(join(root, model, 'tokenizer.json'), 'utf8')).model.vocab;
  const bytes = byteOf();
  const strict = new TextDecoder('utf-8', { fatal: true });
  const ids = [];
  for (const [piece, id] of Object.entries(vocab)) {
    try {
      strict.decode(Uint8Array.from([...piece].map((c) => bytes.get(c) ?? 0)));
    } catch {
      ids.push(id);
    }
  }
  return ids;
}
const bias = random ? Object.fromEntries(partialUtf8Tokens().map((id) => [id, -1000])) : undefined;

const lab = await openLab();
const results = [];
try {
  for (const n of [1, Number(threads)]) {
    // llama.cpp: greedy (temperature 0), its own timings.
    const theirs = await lab.page.evaluate(async ({ n, prompt, maxTokens, bias }) => {
      const { Wllama } = await import('/peer/wllama/index.js');
      const w = new Wllama({ default: '/peer/wllama/wasm/wllama.wasm' }, { suppressNativeLog: true });
      await w.loadModelFromUrl('/peer/model.gguf', { n_threads: n, n_ctx: 1024, useCache: false });
      const r = await w.createCompletion({ prompt, max_tokens: maxTokens, temperature: 0, ...(bias ? { logit_bias: bias } : {}) });
      await w.exit();
      return { text: r.choices[0].text, tokS: r.timings?.predicted_per_second, n: r.timings?.predicted_n };
    }, { n, prompt: PROMPT, maxTokens: Number(tokens), bias });
    // Ours: the page's engine (the threaded module for n > 1) on the same GGUF file, or on
    // the exported model's source folder.
    const engine = await lab.engine({ threads: n });
    if (gguf) await engine.call('fetchGguf', '/peer/model.gguf', 1024);
    else await engine.call('fetchHf', `/${model.replace(/^www\//, '')}`, 1024);
    if (groups) await engine.call('setGroups', Number(groups), 'mean', 0);
    let text = '';
    const stats = await engine.call('generateText', PROMPT, { maxTokens: Number(tokens), temperature: 0 });
    text = stats.text;
    await engine.close();
    results.push({ n, theirs, ours: { text, tokS: stats.decode_tok_s, n: stats.generated_tokens } });
  }
} finally {
  await lab.close();
  rmSync(peer, { recursive: true, force: true });
}
console.log(`model ${model}${groups ? `, converted to G = ${groups}` : ''}, ${gguf ? 'weights as stored in the file' : dtype}, prompt "${PROMPT}", greedy, ${tokens} tokens` +
  (random ? ` (random weights: llama.cpp barred from ${Object.keys(bias).length} partial-UTF-8 tokens, texts not compared)` : ''));
console.log('threads\tllama.cpp (wllama) tok/s\tours tok/s\tours / llama.cpp\tsame text');
for (const { n, theirs, ours } of results) {
  // llama.cpp stops at EOS too; compare the common part when one stopped early.
  const len = Math.min(theirs.text.length, ours.text.length);
  const same = theirs.text.slice(0, len) === ours.text.slice(0, len) && len > 0;
  const verdict = random ? '-' : `${same ? 'yes' : 'NO'} (${len} chars compared)`;
  console.log(`${n}\t${theirs.tokS?.toFixed(1)} (${theirs.n} tokens)\t${ours.tokS.toFixed(1)} (${ours.n} tokens)\t${(ours.tokS / theirs.tokS).toFixed(2)}x\t${verdict}`);
  if (!random && (!same || theirs.text.length !== ours.text.length)) console.log(`  llama.cpp: ${JSON.stringify(theirs.text.slice(0, 200))}\n  ours:      ${JSON.stringify(ours.text.slice(0, 200))}`);
}
