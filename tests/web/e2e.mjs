// End to end in a real browser: Debian's Chromium (never a downloaded one), driven by
// playwright-core, opens the page from the demo server (scripts/serve.mjs) and checks
// what a user sees: SmolLM2's chat (when its GGUF file is in www/models/), a GGUF file by
// link (kept across a reload) and bad links and files, streamed text and tok/s on each backend, the KV bytes for every G against the formula, Stop, a user's
// own llama2.c files, and the error for a corrupt file. Screenshots go to target/e2e/.
//
//   node tests/web/e2e.mjs        (after scripts/build-web.sh)
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { serve } from '../../scripts/serve.mjs';
import { launchChromium } from '../../scripts/support.mjs';
import { check, finish, skip } from './checks.mjs';

const root = fileURLToPath(new URL('../..', import.meta.url));
const shots = `${root}target/e2e`;
const fixture = `${process.env.GQA_SHARED_DIR ?? `${root}../shared`}/fixtures/llama2c`;
// The real model, SmolLM2-135M-Instruct (bash scripts/fetch-model.sh smollm2; git-ignored).
const smollm2 = 'models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf';
rmSync(shots, { recursive: true, force: true });
mkdirSync(shots, { recursive: true });

// E2E_WWW: serve another copy of the page (e.g. with a test model family in models/).
const www = process.env.E2E_WWW ?? `${root}www`;
const server = await serve({ root: www, port: 0 });
// ?test=1: the worker's test hook ('loseGpu') is active only then.
const url = `http://127.0.0.1:${server.address().port}/?test=1`;
const browser = await launchChromium({ webgpu: true });
const page = await browser.newPage({ viewport: { width: 1280, height: 1400 } });
const consoleErrors = [];
page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));
page.on('pageerror', (e) => consoleErrors.push(e.message));
// Missing files are errors, except under /models/: the optional models, and the link test's 404.
page.on('response', (r) => r.status() >= 400 && !/\/models\//.test(r.url()) && consoleErrors.push(`${r.status()} ${r.url()}`));

const state = (expr) => page.evaluate(`(() => { const s = window.gqaState; return ${expr}; })()`);
const idle = () => page.waitForFunction(() => window.gqaState && !window.gqaState.busy && window.gqaState.info, null, { timeout: 120_000 });

async function loadModel(value) {
  await page.selectOption('#model-select', value);
  await page.click('#load-btn');
  await page.waitForFunction(() => window.gqaState.busy, null, { timeout: 5_000 }).catch(() => {});
  await idle();
}

// A small Hugging Face model (config.json + model.safetensors, f32, tied embeddings, no
// tokenizer) trained for `context` positions, built here from its shape.
function hfModelFiles(context) {
  const [dim, ffn, heads, vocab] = [32, 64, 4, 64];
  const shapes = { 'model.embed_tokens.weight': [vocab, dim], 'model.norm.weight': [dim] };
  const L = 'model.layers.0.';
  Object.assign(shapes, {
    [`${L}input_layernorm.weight`]: [dim], [`${L}post_attention_layernorm.weight`]: [dim],
    [`${L}self_attn.q_proj.weight`]: [dim, dim], [`${L}self_attn.k_proj.weight`]: [dim, dim],
    [`${L}self_attn.v_proj.weight`]: [dim, dim], [`${L}self_attn.o_proj.weight`]: [dim, dim],
    [`${L}mlp.gate_proj.weight`]: [ffn, dim], [`${L}mlp.up_proj.weight`]: [ffn, dim], [`${L}mlp.down_proj.weight`]: [dim, ffn],
  });
  const header = {};
  let offset = 0;
  for (const [name, shape] of Object.entries(shapes)) {
    const bytes = 4 * shape.reduce((a, b) => a * b, 1);
    header[name] = { dtype: 'F32', shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const json = Buffer.from(JSON.stringify(header));
  const data = Buffer.alloc(offset);
  for (let i = 0; i < offset / 4; i++) data.writeFloatLE(Math.sin(i) * 0.05, 4 * i);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const config = {
    architectures: ['LlamaForCausalLM'], hidden_size: dim, intermediate_size: ffn, num_hidden_layers: 1,
    num_attention_heads: heads, num_key_value_heads: heads, vocab_size: vocab, max_position_embeddings: context,
    rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: true, bos_token_id: 1, eos_token_id: 2,
  };
  return [
    { name: 'config.json', mimeType: 'application/json', buffer: Buffer.from(JSON.stringify(config)) },
    { name: 'model.safetensors', mimeType: 'application/octet-stream', buffer: Buffer.concat([len, json, data]) },
  ];
}

// The link test's server, on an origin of its own, so that the page downloads with CORS as it
// does from Hugging Face: the GGUF file `bytes` (paced at about 13 MB/s, so that the progress
// shows), a 404, the file cut short of its Content-Length (the connection drops after a
// tenth), an HTML page, a file that is not GGUF (`other`), and the file without a CORS
// header. gets: the GET requests per path. The paths are under /models/, whose 404s the
// page's response check allows.
async function linkServer(bytes, other) {
  const gets = {};
  const cors = { 'Access-Control-Allow-Origin': '*', 'Cross-Origin-Resource-Policy': 'cross-origin', 'Cache-Control': 'no-store' };
  const octets = { ...cors, 'Content-Type': 'application/octet-stream' };
  const server = createServer(async (req, res) => {
    const path = new URL(req.url, 'http://localhost').pathname;
    if (req.method === 'GET') gets[path] = (gets[path] ?? 0) + 1;
    if (path === '/models/smollm2.gguf') {
      res.writeHead(200, { ...octets, 'Content-Length': bytes.length });
      for (let at = 0; at < bytes.length && !res.destroyed; at += 1 << 18) {
        res.write(bytes.subarray(at, at + (1 << 18)));
        await sleep(20);
      }
      return res.end();
    }
    if (path === '/models/truncated.gguf') {
      res.writeHead(200, { ...octets, 'Content-Length': bytes.length });
      return res.write(bytes.subarray(0, bytes.length / 10), () => res.destroy());
    }
    if (path === '/models/page.gguf') {
      res.writeHead(200, { ...cors, 'Content-Type': 'text/html; charset=utf-8' });
      return res.end('<!doctype html><html><head><title>SmolLM2 on Hugging Face</title></head><body>a model page</body></html>');
    }
    if (path === '/models/not-gguf.gguf') {
      res.writeHead(200, { ...octets, 'Content-Length': other.length });
      return res.end(other);
    }
    if (path === '/models/no-cors.gguf') {
      res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
      return res.end(bytes.subarray(0, 1 << 16));
    }
    res.writeHead(404, { ...cors, 'Content-Type': 'text/plain' });
    res.end('not found');
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, gets, link: (name) => `http://127.0.0.1:${server.address().port}/models/${name}` };
}

// Compare all G at `context` (mode 'synthetic' or 'real'); returns the rows the page shows.
async function compareAt(context, mode = 'synthetic', timeout = 120_000) {
  await page.fill('#context', String(context));
  await page.selectOption('#context-mode', mode);
  await page.click('#compare-btn');
  await page.waitForFunction(() => window.gqaState.busy, null, { timeout: 5_000 }).catch(() => {});
  await page.waitForFunction(() => !window.gqaState.busy, null, { timeout });
  return state('s.compare.map((r) => ({ g: r.g, kv: r.kvDtype, label: r.label, uptrained: r.uptrained, tokS: r.tokS, rounds: r.rounds ?? 1, bytes: r.bytesPerToken, kvBytes: r.kvBytes, context: r.context, table: !!r.table, quality: r.quality, longNats: r.table?.eval_long?.nats_per_token ?? null }))');
}

// Start a generation on page p: the chat's Send where the chat view shows, else Generate.
async function startGenerating(p) {
  await p.click((await p.isVisible('#chat')) ? '#chat-send' : '#generate');
}

// Ask the chat `question`; returns the reply as its bubble shows it, and the statistics.
async function chatAsk(question) {
  await page.fill('#chat-input', question);
  const prev = await state('s.lastStats');
  await page.click('#chat-send');
  await page.waitForFunction((prev) => window.gqaState.lastStats !== prev && !window.gqaState.busy, prev, { timeout: 180_000 });
  const reply = await page.$$eval('#chat-log .bubble.assistant .bubble-text', (bs) => bs.at(-1)?.textContent ?? '');
  return { reply, stats: await state('s.lastStats') };
}

// Generate and check that at least `min` tokens streamed and tok/s shows.
async function generateAndCheck(label, { maxTokens = 40, min = 32 } = {}) {
  await page.fill('#max-tokens', String(maxTokens));
  await page.fill('#temperature', '0.8');
  const before = await state('s.tokens');
  await page.click('#generate');
  await idle();
  await page.waitForFunction(() => window.gqaState.lastStats && document.getElementById('tok-s').dataset.final, null, { timeout: 120_000 });
  const stats = await state('s.lastStats');
  const streamed = (await state('s.tokens')) - before;
  const tokS = Number(await page.textContent('#tok-s'));
  const output = await page.textContent('#output');
  check(stats.generated_tokens >= min || stats.stop_reason === 'eos', `${label}: generated ${stats.generated_tokens} tokens (stop: ${stats.stop_reason})`);
  check(streamed >= Math.min(min, stats.generated_tokens) - 1, `${label}: ${streamed} token messages streamed`);
  check(tokS > 0, `${label}: tok/s shows ${tokS}`);
  check(output.length > (await page.inputValue('#prompt')).length, `${label}: text appeared (${output.length} chars)`);
  return stats;
}

try {
  // Page open to first token with the default model (the shipped base when present).
  const t0 = Date.now();
  await page.goto(url);
  await idle();
  const loadedMs = Date.now() - t0;
  await startGenerating(page);
  await page.waitForFunction(() => window.gqaState.tokens > 0, null, { timeout: 60_000 });
  const firstMs = Date.now() - t0;
  await idle();
  const model = await page.$eval('#model-select', (s) => s.selectedOptions[0].textContent);
  console.log(`page open to model loaded: ${loadedMs} ms; to the first generated token: ${firstMs} ms (${model}, ${await state('s.info.backend')})`);
  const gpu = await state('s.webgpu');
  console.log(`WebGPU in the worker: ${JSON.stringify(gpu)}`);
  check((await page.textContent('#backend-note')).length > 10, 'the backend note explains the engines');

  // Threads: the demo server isolates the page, so the worker loads the threaded module
  // with one thread per core, and every CPU figure says how many.
  const cores = await page.evaluate(() => navigator.hardwareConcurrency);
  const threads = await state('s.threads');
  check(await page.evaluate(() => self.crossOriginIsolated), 'the demo server makes the page cross-origin isolated');
  check(threads === Math.min(cores, 64), `the page loads the threaded module by itself: ${threads} threads on ${cores} cores`);
  check((await page.textContent('#backend-note')).includes(`${threads} thread`), `the backend note gives the CPU engine's ${threads} threads`);
  if ((await state('s.info.backend')).startsWith('cpu')) {
    check((await page.textContent('#tok-s-label')).includes(`${threads} thread`), `the tok/s label gives the threads: "${await page.textContent('#tok-s-label')}"`);
  }

  // SmolLM2-135M-Instruct, when its file is served: the page opens on it, in the chat view.
  if (existsSync(`${www}/${smollm2}`)) {
    const label = 'SmolLM2-135M-Instruct (GGUF Q4_1, 98 MB, native GQA-3, Hugging Face, Apache-2.0)';
    const opened = await page.$eval('#model-select', (s) => [s.value, s.selectedOptions[0].textContent]);
    check(opened[0] === 'real:smollm2' && opened[1] === label, `the page opens on SmolLM2: "${opened[1]}"`);
    const info = await state('s.info');
    check(info.nHeads === 9 && info.baseKvHeads === 3 && info.nKvHeads === 3 && info.context === 8192 && info.capacity === 8192 && info.kvDtype === 'f16',
      `SmolLM2 loaded: H = ${info.nHeads}, native G = ${info.baseKvHeads}, a KV cache of ${info.capacity} of ${info.context} positions in ${info.kvDtype}`);
    const capacity = await page.textContent('#kv-capacity');
    check(/8192 of the model's 8192 positions in f16/.test(capacity) && /whole context/.test(capacity), `the page says what KV cache it chose: "${capacity}"`);
    check((await page.isVisible('#chat')) && !(await page.isVisible('#output')) && !(await page.isVisible('#generate')),
      'a model with a chat template gets the chat view (no "continue this text" box)');
    const gChoices = await page.$$eval('#g-select option', (os) => os.map((o) => [Number(o.value), o.textContent]));
    check(gChoices.map(([g]) => g).join() === '9,3,1' && /same model/.test(gChoices[0][1]) && /native/.test(gChoices[1][1]) && /MQA/.test(gChoices[2][1]),
      `G choices: ${gChoices.map(([, l]) => l).join(' | ')}`);
    // The opening generation (sampled) is done: greedy from here, a fresh chat.
    await page.fill('#temperature', '0');
    await page.fill('#max-tokens', '64');
    await page.click('#chat-new');
    check((await page.$$eval('#chat-log .bubble', (bs) => bs.length)) === 0, 'New chat empties the conversation');
    const france = 'What is the capital of France?';
    const at3 = await chatAsk(france);
    check(/Paris/.test(at3.reply) && at3.stats.stop_reason === 'eos', `G = 3 (native), greedy: "${at3.reply}" (${at3.stats.generated_tokens} tokens, ${at3.stats.decode_tok_s.toFixed(1)} tok/s)`);
    // G = 9: each key/value head repeated. The conversation stays; the second turn reads it.
    const toG = async (g) => {
      await page.selectOption('#g-select', String(g));
      await page.waitForFunction((g) => window.gqaState.info.nKvHeads === g && !window.gqaState.busy, g, { timeout: 60_000 });
    };
    await toG(9);
    const mha = await state('s.info');
    const diagram = await page.$eval('#head-diagram', (svg) => [svg.querySelectorAll('.q-node').length, svg.querySelectorAll('.kv-node').length]);
    check(mha.kvBytesPerPosition === mha.kvBytesPerPositionMha && diagram.join() === '9,9' && /repeated 3 times/.test(await page.textContent('#head-provenance')),
      `G = 9: MHA's cache (${mha.kvBytesPerPosition} bytes per position), 9 query heads wired to 9 key/value heads, "${await page.textContent('#head-provenance')}"`);
    check((await page.$$eval('#chat-log .bubble', (bs) => bs.length)) === 2, 'the conversation is kept across the change of G');
    // The live quality readout: repeating heads changes nothing the model predicts.
    const q9 = await page.textContent('#g-quality');
    const kl9 = Number(await page.$eval('#g-quality', (e) => e.dataset.kl));
    // (Not exactly 0: the engines sum in another order for 9 heads than for 3.)
    check(kl9 >= 0 && kl9 < 1e-4 && /top-1 agreement 100\.0%/.test(q9), `G = 9 against G = 3 on the fixed chat: KL ${kl9}, "${q9}"`);
    const tower = await chatAsk('What is the most famous tower in that city?');
    check(/Paris/.test(tower.reply) && tower.stats.prompt_tokens > at3.stats.prompt_tokens + at3.stats.generated_tokens,
      `a second turn at G = 9 reads the first (prompt of ${tower.stats.prompt_tokens} tokens): "${tower.reply}"`);
    await page.screenshot({ path: `${shots}/chat-smollm2.png`, fullPage: true });
    await page.click('#chat-new');
    const at9 = await chatAsk(france);
    check(at9.reply === at3.reply, `G = 9 (MHA: the same model), greedy, the same text as G = 3: "${at9.reply}"`);
    // MQA: the three key/value heads mean-pooled into one, not trained since.
    await page.selectOption('#method', 'mean');
    await toG(1);
    await page.click('#chat-new');
    const at1 = await chatAsk(france);
    const shownAt1 = await page.$$eval('#chat-log .bubble.assistant', (bs) => bs.at(-1).textContent);
    check(at1.reply.length > 0 && /MQA/.test(shownAt1), `G = 1 (mean), greedy: "${at1.reply}"`);
    const q1 = await page.textContent('#g-quality');
    const kl1 = Number(await page.$eval('#g-quality', (e) => e.dataset.kl));
    check(kl1 > 0 && /KL \d/.test(q1) && /G = 1 of H = 9, mean/.test(q1), `G = 1 (mean) against G = 3, live: "${q1}"`);
    await page.screenshot({ path: `${shots}/chat-smollm2-mqa.png`, fullPage: true });
    console.log(`MEASURED SmolLM2 chat decode on ${info.backend}: G = 3 ${at3.stats.decode_tok_s.toFixed(1)}, G = 9 ${at9.stats.decode_tok_s.toFixed(1)}, ` +
      `G = 1 ${at1.stats.decode_tok_s.toFixed(1)} tok/s`);
    await toG(3);
    // Stop mid-reply: the text so far stays, as the model's turn.
    await page.click('#chat-new');
    await page.fill('#max-tokens', '400');
    await page.fill('#chat-input', 'Write a long story about a dragon who learns to bake bread.');
    const sent = await state('s.tokens');
    await page.click('#chat-send');
    await page.waitForFunction((n) => window.gqaState.tokens > n + 8, sent, { timeout: 60_000 });
    await page.$eval('#chat-stop', (b) => b.disabled || b.click());
    await idle();
    const stopped = await state('s.lastStats');
    const stoppedTurn = await page.evaluate(() => [window.gqaChat.messages.length, window.gqaChat.messages.at(-1)?.content ?? '',
      document.querySelector('#chat-log .bubble.assistant .bubble-meta')?.textContent ?? '']);
    check(stopped.stop_reason === 'stopped' && stoppedTurn[0] === 2 && stoppedTurn[1].length > 0 && /stopped/.test(stoppedTurn[2]),
      `Stop ends the reply after ${stopped.generated_tokens} tokens and keeps it as the model's turn: "${stoppedTurn[1].slice(0, 60)}…" (${stoppedTurn[2]})`);

    // Compare all G at SmolLM2's whole context: 8192 positions in f16, the cache filled
    // with synthetic values; each row also answers the chat's last question.
    await page.fill('#max-tokens', '16');
    const rows8k = (await compareAt(8192, 'synthetic', 600_000)).filter((r) => !r.uptrained);
    const byG = Object.fromEntries(rows8k.map((r) => [r.g, r]));
    check(rows8k.map((r) => r.g).join() === '9,3,1' && rows8k.every((r) => r.context === 8192 && r.kv === 'f16'),
      `compare at 8192: ${rows8k.map((r) => `G = ${r.g} (${r.kv}, ${r.context} positions)`).join(', ')}`);
    // 30 layers x keys and values x G x 64 x 2 bytes x 8192 positions.
    check([9, 3, 1].every((g) => byG[g]?.kvBytes === 30 * 2 * g * 64 * 2 * 8192),
      `KV bytes exactly 9 : 3 : 1: ${[9, 3, 1].map((g) => byG[g]?.kvBytes).join(' : ')}`);
    const speeds = [9, 3, 1].map((g) => byG[g]?.tokS ?? 0);
    check(speeds[0] > 0 && speeds[0] < speeds[1] && speeds[1] < speeds[2], `measured tok/s at 8192: MHA ${speeds[0].toFixed(2)} < GQA-3 ${speeds[1].toFixed(2)} < MQA ${speeds[2].toFixed(2)}`);
    const summary = await page.textContent('#compare-summary');
    check(/fewer bytes per token than MHA/.test(summary) && /not the attention arithmetic/.test(summary), `the line under the table: "${summary.slice(0, 160)}…"`);
    const klAt1 = byG[1]?.quality?.kl_vs_base;
    check(klAt1 > 0 && byG[9]?.quality?.kl_vs_base < 1e-4, `the table's live KL against G = 3: G = 9 ${byG[9]?.quality?.kl_vs_base}, G = 1 ${klAt1}`);
    console.log(`MEASURED SmolLM2 compare at 8192 (f16, ${await state('s.info.backend')}): ${rows8k.map((r) => `G = ${r.g} ${r.tokS.toFixed(2)} tok/s`).join(', ')}`);
    await page.$eval('#compare-btn', (b) => b.closest('.row').previousElementSibling.scrollIntoView());
    await page.screenshot({ path: `${shots}/compare-smollm2-8192.png` });

    // WebGPU: the same model, its 4-bit blocks read in place by the shaders. (Chromium's
    // software adapter, SwiftShader, takes seconds a token: four tokens are asked for.)
    if ((await state('s.webgpu')).available) {
      await page.selectOption('#backend', 'webgpu');
      await page.waitForFunction(() => !window.gqaState.busy, null, { timeout: 120_000 });
      const gpuName = await state('s.info.backend');
      const gpuWeights = await state('s.info.weightBytes');
      await page.click('#chat-new');
      await page.fill('#max-tokens', '4');
      const gpu = await chatAsk(france);
      check(/gpu/i.test(gpuName) && gpu.stats?.generated_tokens === 4 && gpu.reply.length > 4 && at3.reply.startsWith(gpu.reply),
        `SmolLM2 on WebGPU (${gpuName}), G = 3, greedy: "${gpu.reply}", as the CPU began: "${at3.reply}"`);
      // Its 4-bit blocks as stored (the file is 98.4 MB), not widened to f32 (about 540 MB).
      check(gpuWeights === info.weightBytes && gpuWeights < 110e6, `on WebGPU the weights stay 4-bit: ${gpuWeights} bytes (on the CPU: ${info.weightBytes})`);
      console.log(`MEASURED SmolLM2 chat decode on WebGPU (${gpuName}): ${gpu.stats?.decode_tok_s?.toFixed(2)} tok/s`);
      await page.selectOption('#backend', 'cpu');
      await page.waitForFunction(() => !window.gqaState.busy && /cpu/.test(window.gqaState.info.backend), null, { timeout: 120_000 });
    } else {
      skip('SmolLM2 on WebGPU', 'WebGPU in Chromium');
    }
    await page.fill('#temperature', '0.8');
    await page.fill('#max-tokens', '128');

    // A tab with less memory (?memory=1000 MiB), f32 asked for: the page fits the cache
    // before allocating, says what it chose, and every G still converts.
    const small = await browser.newPage();
    const smallErrors = [];
    small.on('pageerror', (e) => smallErrors.push(e.message));
    await small.goto(url.replace('?test=1', '?test=1&memory=1000&kv=f32'));
    await small.waitForFunction(() => window.gqaState?.info && !window.gqaState.busy, null, { timeout: 120_000 });
    const si = await small.evaluate(() => window.gqaState.info);
    const mhaBytes = 2 * 30 * 9 * 64 * { f32: 4, f16: 2 }[si.kvDtype] * si.capacity;
    check(!!si.kvWhy && 2 * mhaBytes <= 1000 * 2 ** 20 && (si.kvDtype === 'f16' || si.capacity < 8192),
      `?memory=1000, f32 asked: ${si.capacity} positions in ${si.kvDtype} (MHA's cache twice: ${(2 * mhaBytes / 2 ** 20).toFixed(0)} MiB): "${si.kvWhy}"`);
    check(/Not what the page asked for/.test(await small.textContent('#kv-capacity')), `the page says why: "${await small.textContent('#kv-capacity')}"`);
    for (const g of [9, 1, 3]) {
      await small.selectOption('#g-select', String(g));
      await small.waitForFunction((g) => window.gqaState.info.nKvHeads === g && !window.gqaState.busy, g, { timeout: 60_000 });
    }
    check((await small.isHidden('#error')) && smallErrors.length === 0, `in that tab G converts to 9, 1 and 3 with no error (${smallErrors.join('; ') || 'none'})`);
    await small.close();
    // Without the file on the server, the page opens on the shipped family and says how to get it.
    const without = await browser.newPage();
    await without.route(`**/${smollm2}`, (r) => r.fulfill({ status: 404, body: 'not found' }));
    await without.goto(url);
    await without.waitForFunction(() => window.gqaState?.info && !window.gqaState.busy, null, { timeout: 120_000 });
    const hint = await without.textContent('#model-hint');
    const firstChoice = await without.$eval('#model-select', (s) => s.options[0].textContent);
    check(!(await without.isVisible('#chat')) && !/SmolLM2/.test(firstChoice) && /bash scripts\/fetch-model\.sh smollm2/.test(hint),
      `without the file: opens on "${firstChoice}", and says "${hint}"`);
    await without.close();
  } else {
    skip('SmolLM2 chat', `${www}/${smollm2} (bash scripts/fetch-model.sh smollm2)`);
    check(/fetch-model\.sh smollm2/.test(await page.textContent('#model-hint')), `the page says how to get SmolLM2: "${await page.textContent('#model-hint')}"`);
  }

  // A GGUF file by link (SmolLM2's, from the link server): progress, kept in Cache Storage so
  // that a reload with ?model= does not download it again, Delete; then bad links and files,
  // each an error in words while the loaded model stays usable.
  if (existsSync(`${www}/${smollm2}`)) {
    const file = readFileSync(`${www}/${smollm2}`);
    const safetensors = hfModelFiles(64)[1].buffer;
    const links = await linkServer(file, safetensors);
    const good = links.link('smollm2.gguf');
    const mb = (file.length / 1e6).toFixed(1);
    const kept = () => page.$$eval('#kept-list li', (lis) => lis.map((li) => li.textContent));
    const cached = () => page.evaluate(async () => (await (await caches.open('gqa-lab-models')).keys()).map((r) => r.url));
    const greedyParis = async (label) => {
      await page.fill('#temperature', '0');
      await page.fill('#max-tokens', '24');
      await page.click('#chat-new');
      const { reply } = await chatAsk('What is the capital of France?');
      check(/Paris/.test(reply), `${label}: the loaded model still answers, greedy: "${reply}"`);
    };
    await page.fill('#link-url', good);
    await page.click('#link-btn');
    const progressShown = new RegExp(`^downloading smollm2\\.gguf: [\\d.]+ MB of ${mb.replace('.', '\\.')} MB, [\\d.]+ MB/s, \\d+ s left$`);
    await page.waitForFunction(([re]) => new RegExp(re).test(document.getElementById('progress-label').textContent) && document.getElementById('progress').value > 0.15,
      [progressShown.source], { timeout: 60_000 });
    const during = [await page.textContent('#progress-label'), await page.getAttribute('#progress', 'value'), await page.isVisible('#download-cancel')];
    await page.screenshot({ path: `${shots}/download-progress.png` });
    check(progressShown.test(during[0]) && Number(during[1]) > 0 && during[2], `a download by link shows its progress: "${during[0]}" (bar at ${Number(during[1]).toFixed(2)}, Cancel shown)`);
    await idle();
    const byLink = await state('s.info');
    const note = await page.textContent('#notice');
    check(byLink.nHeads === 9 && byLink.baseKvHeads === 3 && byLink.capacity === 8192 && byLink.kvDtype === 'f16' && links.gets['/models/smollm2.gguf'] === 1 &&
      /kept in this browser/.test(note), `SmolLM2 by link: H = ${byLink.nHeads}, G = ${byLink.baseKvHeads}, ${byLink.capacity} positions in ${byLink.kvDtype}; "${note}"`);
    const keptList = await kept();
    check(keptList.length === 1 && keptList[0].startsWith(`smollm2.gguf, ${mb} MB`) && (await cached()).join() === good,
      `the kept list: ${JSON.stringify(keptList)}; Cache Storage holds ${await cached()}`);
    check((await page.inputValue('#model-select')) === good, 'the picker shows the model by link (its value, the link, is what a shared link carries)');
    await greedyParis('SmolLM2 by link');

    // A reload with ?model=URL opens it from the kept copy: the server sees no second GET.
    await page.goto(`${url}&model=${encodeURIComponent(good)}`);
    await idle();
    const reloaded = await state('s.info');
    const reloadNote = await page.textContent('#notice');
    check(reloaded.nHeads === 9 && links.gets['/models/smollm2.gguf'] === 1 && /kept in this browser, no download/.test(reloadNote) &&
      (await page.inputValue('#model-select')) === good, `reloaded with ?model=<link>: loaded again with ${links.gets['/models/smollm2.gguf']} GET in all: "${reloadNote}"`);

    // Bad links: each an error in words; the loaded model stays, and nothing is kept.
    const badLinks = [
      ['missing.gguf', /^the link gave HTTP 404 \(not found\)$/],
      ['truncated.gguf', new RegExp(`^the download stopped after [\\d.]+ MB of ${mb.replace('.', '\\.')} MB; nothing was kept$`)],
      ['page.gguf', /^the link gave an HTML page, not a GGUF file \(a Hugging Face "blob" page\? use its "resolve" link\)$/],
      ['not-gguf.gguf', /^the link is not a GGUF file: it starts with ".*" \(bytes [0-9a-f ]+\), not "GGUF"$/],
      ['no-cors.gguf', /does not let other sites read its files \(no CORS header\)/],
    ];
    const bad = async (what, want, act) => {
      await act();
      await page.waitForSelector('#error:not([hidden])', { timeout: 60_000 });
      await idle();
      const error = await page.textContent('#error');
      const info = await state('s.info');
      check(want.test(error) && info.nHeads === 9 && info.baseKvHeads === 3 && (await state('s.loaded.url')) === good && (await cached()).join() === good,
        `${what}: "${error}"; SmolLM2 stays loaded, nothing new kept`);
    };
    for (const [name, want] of badLinks) {
      await bad(`a link to ${name}`, want, async () => {
        await page.fill('#link-url', links.link(name));
        await page.click('#link-btn');
      });
    }
    // Bad files: a truncated GGUF file (the engine says so), an HTML page saved as .gguf, a
    // .safetensors file named .gguf.
    const badFiles = [
      ['SmolLM2-part.gguf', file.subarray(0, file.length / 10), /truncated|ends at byte/],
      ['SmolLM2 - Hugging Face.gguf', Buffer.from('<!DOCTYPE html>\n<html><body>a model page</body></html>'), /^SmolLM2 - Hugging Face\.gguf is an HTML page, not a GGUF file/],
      ['model.gguf', safetensors, /^model\.gguf is not a GGUF file: it starts with ".*" \(bytes [0-9a-f ]+\), not "GGUF"$/],
    ];
    for (const [name, buffer, want] of badFiles) {
      await bad(`the file ${name}`, want, () => page.setInputFiles('#file-input', { name, mimeType: 'application/octet-stream', buffer }));
    }
    await page.screenshot({ path: `${shots}/bad-link.png` });
    await greedyParis('after the bad links and files');

    // Delete: the list empties, Cache Storage no longer holds it, and ?model= downloads again.
    await page.click('#kept-list .kept-delete');
    await page.waitForFunction(() => document.querySelectorAll('#kept-list li').length === 0, null, { timeout: 10_000 });
    check((await cached()).length === 0 && !(await page.isVisible('#kept')), 'Delete removes the kept copy (the list and Cache Storage are empty)');
    await page.goto(`${url}&model=${encodeURIComponent(good)}`);
    await idle();
    check(links.gets['/models/smollm2.gguf'] === 2 && (await state('s.info.nHeads')) === 9, 'after Delete, ?model=<link> downloads it again (a second GET)');
    await page.click('#kept-list .kept-delete');
    await page.waitForFunction(() => document.querySelectorAll('#kept-list li').length === 0, null, { timeout: 10_000 });
    links.server.close();
    // Back to the page as it opens by default.
    await page.goto(url);
    await idle();
  } else {
    skip('a GGUF file by link', `${www}/${smollm2} (bash scripts/fetch-model.sh smollm2)`);
  }

  // The shipped family (www/models/results.json): the base, converted and uptrained.
  if (existsSync(`${www}/models/results.json`)) {
    await page.selectOption('#backend', 'cpu');
    const base = await page.$eval('#model-select', (s) => [...s.options].find((o) => o.value.startsWith('shipped:'))?.value ?? '');
    check(base.startsWith('shipped:'), `the picker offers the shipped base (${base})`);
    await loadModel(base);
    await generateAndCheck('shipped base, CPU');
    const uptrainedG = await state('Object.keys(s.shipped.uptrained).map(Number)');
    for (const g of uptrainedG) {
      await page.selectOption('#g-select', String(g));
      await idle();
      await page.check('#uptrained');
      await page.waitForFunction((g) => window.gqaState.info.baseKvHeads === g && !window.gqaState.busy, g, { timeout: 60_000 }).catch(() => {});
      const uptrained = await state('s.info');
      check(uptrained.baseKvHeads === g && uptrained.nKvHeads === g,
        `G = ${g}: the uptrained checkpoint is loaded (its own G = ${uptrained.baseKvHeads}, running G = ${uptrained.nKvHeads})`);
      await page.uncheck('#uptrained');
      await page.waitForFunction((g) => window.gqaState.info.baseKvHeads !== g && window.gqaState.info.nKvHeads === g && !window.gqaState.busy, g, { timeout: 60_000 }).catch(() => {});
      const converted = await state('s.info');
      check(converted.baseKvHeads !== g && converted.nKvHeads === g,
        `G = ${g}: back to the base (G = ${converted.baseKvHeads}), converted to G = ${converted.nKvHeads}`);
    }
    // Compare all G at the longest context the base holds, with the uptrained checkpoints.
    await page.fill('#max-tokens', '16');
    const info = await state('s.info');
    const long = Math.min(2048, info.capacity);
    const rows = await compareAt(long);
    const converted = rows.filter((r) => !r.uptrained);
    const uptrainedRows = rows.filter((r) => r.uptrained);
    check(converted.map((r) => r.g).join() === (await state('s.groupsToCompare')).join(),
      `compare at context ${long}: one converted row per G (${converted.map((r) => r.label).join(', ')})`);
    check(uptrainedRows.map((r) => r.g).sort().join() === uptrainedG.sort().join(),
      `compare at context ${long}: the uptrained checkpoints have rows too (${uptrainedRows.map((r) => r.label).join(', ')})`);
    check(rows.every((r) => r.context === long && r.table), `every row at context ${long}, with the shipped quality table's numbers`);
    check(converted.every((r, i) => i === 0 || r.bytes < converted[i - 1].bytes), `bytes per token fall from MHA to MQA: ${converted.map((r) => r.bytes).join(' > ')}`);
    const shownTokS = await page.$$eval('#compare-table tbody tr', (trs) => trs.map((tr) => Number(tr.dataset.tokS)));
    check(rows.every((r, i) => r.rounds === 5 && shownTokS[i] === r.tokS),
      `every row timed in 5 interleaved rounds, the table showing the fastest (${rows.map((r) => r.rounds).join(', ')} rounds)`);
    // Speed is measured here, not asserted (the machine may be busy): the figures go to the log and the README.
    const rising = converted.every((r, i) => i === 0 || r.tokS > converted[i - 1].tokS);
    const [mha, mqa] = [converted[0], converted.at(-1)];
    console.log(`MEASURED compare at context ${long} on the CPU: ${rows.map((r) => `${r.label} ${r.tokS.toFixed(1)} tok/s`).join(', ')}; ` +
      `tok/s ${rising ? 'rise' : 'do not rise'} from MHA to MQA; MQA/MHA tok/s ${(mqa.tokS / mha.tokS).toFixed(2)} against bytes ${(mha.bytes / mqa.bytes).toFixed(2)}`);
    const summary = await page.textContent('#compare-summary');
    check(summary.includes(`${(mha.bytes / mqa.bytes).toFixed(2)}x fewer bytes`) && summary.includes(`${(mqa.tokS / mha.tokS).toFixed(2)}x as fast`) &&
      summary.includes(`all ${long} positions`) && /multiply-adds per token/.test(summary),
      `under the table, MQA against MHA in bytes and in speed, and why they differ: "${summary.slice(0, 140)}..."`);
    await page.screenshot({ path: `${shots}/shipped-compare.png`, fullPage: true });

    // Figure 6 is drawn from the rows, and the results export as files that parse.
    check(await page.$eval('#figure6-chart', (c) => c.getContext('2d').getImageData(0, 0, c.width, c.height).data.some((v) => v !== 0)),
      'Figure 6 (time per token against G) is drawn');
    const saved = async (button, count = 1) => {
      const files = [];
      const onDownload = (d) => files.push(d);
      page.on('download', onDownload);
      await page.click(button);
      for (let i = 0; i < 50 && files.length < count; i++) await new Promise((r) => setTimeout(r, 100));
      page.off('download', onDownload);
      return Promise.all(files.map(async (d) => ({ name: d.suggestedFilename(), bytes: readFileSync(await d.path()) })));
    };
    const [json] = await saved('#export-json');
    const exported = JSON.parse(json.bytes.toString());
    check(exported.compare.length === rows.length && exported.compare.every((r, i) => r.tokS === rows[i].tokS) && exported.model.nHeads === info.nHeads,
      `${json.name}: ${exported.compare.length} compare rows, the model and the settings (${Object.keys(exported.settings).join(', ')})`);
    const [csv] = await saved('#export-csv');
    const lines = csv.bytes.toString().trim().split('\n');
    const tokCol = lines[0].split(',').indexOf('tok_s');
    check(lines[0].startsWith('label,g,kv_dtype,') && lines.length === rows.length + 1 && lines.slice(1).every((l, i) => Number(l.split(',')[tokCol]) === rows[i].tokS),
      `${csv.name}: a header and ${lines.length - 1} rows whose tok/s match the table`);
    const pngs = await saved('#export-png', 5);
    const png = (b) => b.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
    check(pngs.length === 5 && pngs.every((f) => png(f.bytes)), `charts as PNG: ${pngs.map((f) => `${f.name} (${f.bytes.length} B)`).join(', ')}`);

    // A link to the settings reopens the page with every one of them.
    const settle = async (sel, value) => {
      await page.selectOption(sel, value);
      await page.waitForFunction(() => window.gqaState.busy, null, { timeout: 2_000 }).catch(() => {});
      await idle();
    };
    await settle('#method', 'first');
    await settle('#g-select', '2');
    await settle('#kv-dtype', 'f16');
    await page.fill('#context', '1024');
    await page.fill('#prompt', 'The little dog');
    await page.fill('#seed', '7');
    await page.click('#share-link');
    const link = await page.inputValue('#share-url');
    const other = await browser.newPage();
    await other.goto(link);
    await other.waitForFunction(() => window.gqaState?.info?.nKvHeads === 2 && !window.gqaState.busy, null, { timeout: 60_000 }).catch(() => {});
    const restored = await other.evaluate(() => {
      const v = (id) => document.getElementById(id).value;
      return { model: v('model-select'), g: window.gqaState.info?.nKvHeads, method: v('method'), kv: v('kv-dtype'),
        kvEngine: window.gqaState.info?.kvDtype, context: v('context'), prompt: v('prompt'), seed: v('seed') };
    });
    const wanted = { model: await page.inputValue('#model-select'), g: 2, method: 'first', kv: 'f16', kvEngine: 'f16', context: '1024', prompt: 'The little dog', seed: '7' };
    check(JSON.stringify(restored) === JSON.stringify(wanted), `the link ${link.slice(link.indexOf('?'))} restores ${JSON.stringify(restored)}`);
    await other.screenshot({ path: `${shots}/shared-link.png`, fullPage: true });
    await other.close();
    await settle('#kv-dtype', '');
    await settle('#method', 'mean');
    await settle('#g-select', String(info.baseKvHeads));
    await page.fill('#prompt', 'Once upon a time');
    await page.fill('#seed', '1');

    // The sweep reaches the base's capacity, one line per G.
    await page.click('#sweep-btn');
    await page.waitForFunction(() => window.gqaState.busy, null, { timeout: 5_000 }).catch(() => {});
    await idle();
    const sweep = await state('Object.fromEntries(Object.entries(s.sweep).map(([g, p]) => [g, p.at(-1)[0]]))');
    const groups = await state('s.groupsToCompare');
    check(groups.every((g) => sweep[g] === info.capacity), `the sweep reaches ${info.capacity} for every G: ${JSON.stringify(sweep)}`);
    await page.screenshot({ path: `${shots}/shipped-sweep.png`, fullPage: true });

    // Bad input: a context beyond the model's limit is refused in words, and nothing runs
    // (the last comparison stays).
    const shown = await state('s.compare.length');
    await page.fill('#context', String(info.context + 1));
    await page.click('#compare-btn');
    await page.waitForSelector('#error:not([hidden])', { timeout: 10_000 });
    const tooLong = await page.textContent('#error');
    check(/trained for at most/.test(tooLong) && !(await state('s.busy')) && (await state('s.compare.length')) === shown,
      `a context beyond the model's limit is refused: "${tooLong}"`);
    await page.fill('#context', '');
    await page.click('#compare-btn');
    check(/whole number/.test(await page.textContent('#error')), `a context that is not a number is refused: "${await page.textContent('#error')}"`);

    // The KV bars grow token by token during a generation, G's beside MHA's. The page
    // records every update of the bars (a small model decodes thousands of tokens a
    // second: polling from here can miss the whole generation on a busy machine).
    await page.selectOption('#g-select', '1');
    await idle();
    await page.fill('#max-tokens', String(Math.min(1500, info.capacity - 32)));
    await page.evaluate(() => {
      const bar = document.getElementById('kv-bar'), mha = document.getElementById('kv-bar-mha');
      window.kvSamples = [];
      window.kvObserver = new MutationObserver(() =>
        window.kvSamples.push([parseFloat(bar.style.width), parseFloat(mha.style.width), window.gqaState.contextUsed]));
      window.kvObserver.observe(bar, { attributes: true, attributeFilter: ['style'] });
    });
    await page.click('#generate');
    await page.waitForFunction(() => window.gqaState.busy, null, { timeout: 5_000 }).catch(() => {});
    await page.waitForFunction(() => window.gqaState.contextUsed > 220 || !window.gqaState.busy, null, { timeout: 60_000 }).catch(() => {});
    await page.screenshot({ path: `${shots}/kv-bar-growing.png`, fullPage: true });
    // Stop what is left, if anything: checked and clicked in the page in one step, since
    // the story may end (its end token) between a check from here and a click.
    await page.$eval('#stop', (b) => b.disabled || b.click());
    await idle();
    const samples = await page.evaluate(() => { window.kvObserver.disconnect(); return window.kvSamples.filter((x) => x[2] > 20); });
    const [first, second] = [samples[0] ?? [0, 0, 0], samples.at(-1) ?? [0, 0, 0]];
    check(second[0] > first[0] && second[1] > first[1] && second[1] > second[0],
      `the KV bars grow during generation: MQA ${first[0].toFixed(2)}% -> ${second[0].toFixed(2)}%, MHA ${first[1].toFixed(2)}% -> ${second[1].toFixed(2)}% (context ${first[2]} -> ${second[2]}, ${samples.length} updates)`);
    await page.selectOption('#g-select', String(info.baseKvHeads));
    await idle();
  } else {
    skip('shipped models', `${www}/models/results.json`);
  }

  // CPU, random tiny preset.
  await page.selectOption('#backend', 'cpu');
  await loadModel('preset:tiny');
  await generateAndCheck('tiny preset, CPU');
  const cpuText = await page.textContent('#output');
  await page.screenshot({ path: `${shots}/cpu-tiny.png`, fullPage: true });

  // WebGPU (in headless Chromium: SwiftShader), when the browser offers it.
  if (gpu?.available) {
    await page.selectOption('#backend', 'webgpu');
    await idle();
    await page.waitForFunction(() => /gpu/.test(window.gqaState.info.backend), null, { timeout: 60_000 }).catch(() => {});
    const backend = await page.textContent('#backend-used');
    check(/gpu/.test(backend), `WebGPU backend in use: ${backend} (${await page.textContent('#backend-note')})`);
    const stats = await generateAndCheck('tiny preset, WebGPU');
    check(/gpu/.test(stats.backend), `generated on ${stats.backend}`);
    // Sampling runs on the GPU (sample.wgsl) from the same seeded draws as the CPU's. With
    // the GPU's default f16 KV cache the text may part from the CPU's (f32): the note says so.
    const note = await page.textContent('#backend-note');
    check((await state('s.info.kvDtype')) === 'f16' && /f16/.test(note) && /\?kv=f32/.test(note),
      `on WebGPU the KV cache is f16 by default, and the note says what that does to sampled text: "${note.slice(note.indexOf('WebGPU keeps'))}"`);
    console.log(`sampled text, f16 KV on WebGPU vs f32 on the CPU: ${(await page.textContent('#output')) === cpuText ? 'the same' : 'parted'}`);
    await page.screenshot({ path: `${shots}/webgpu-tiny.png`, fullPage: true });

    // A lost device mid-generation: the page says so, keeps the text, runs on the CPU.
    await page.fill('#max-tokens', '400');
    await page.click('#generate');
    await page.waitForFunction(() => document.getElementById('output').textContent.length > 40, null, { timeout: 60_000 });
    await page.evaluate(() => window.gqaState.worker.postMessage({ type: 'loseGpu' }));
    await page.waitForSelector('#error:not([hidden])', { timeout: 60_000 });
    await idle();
    const lost = await page.textContent('#error');
    check(/WebGPU failed/.test(lost) && /CPU/.test(lost), `device lost is shown: "${lost}"`);
    check((await page.textContent('#output')).length > 40, 'the text generated before the loss is kept');
    check(/cpu/.test(await state('s.info.backend')) && (await page.inputValue('#backend')) === 'cpu', 'the page continues on the CPU');
    await generateAndCheck('tiny preset, CPU after the GPU was lost');

    // ?kv=f32: both engines keep f32 keys and values, and sampling on WebGPU streams the
    // CPU's text for the same seed.
    await page.goto(`${url}&kv=f32`);
    await idle();
    await loadModel('preset:tiny');
    await generateAndCheck('tiny preset, CPU, ?kv=f32');
    const cpuF32 = await page.textContent('#output');
    await page.selectOption('#backend', 'webgpu');
    await idle();
    await page.waitForFunction(() => /gpu/.test(window.gqaState.info.backend), null, { timeout: 60_000 }).catch(() => {});
    await generateAndCheck('tiny preset, WebGPU, ?kv=f32');
    const gpuF32 = await page.textContent('#output');
    check((await state('s.info.kvDtype')) === 'f32' && gpuF32 === cpuF32,
      `with ?kv=f32, WebGPU sampling (temperature 0.8, top-p 0.9, seed ${await page.inputValue('#seed')}) streams the CPU's text ` +
      `(${gpuF32.length} chars): ${JSON.stringify(gpuF32.slice(-50))} vs ${JSON.stringify(cpuF32.slice(-50))}`);
    await page.selectOption('#backend', 'cpu');
    await idle();
  } else {
    skip('WebGPU generation', `WebGPU in the browser (${gpu?.reason})`);
  }

  // Every G: the KV bytes shown equal 2 x layers x G x head_dim x context x 4.
  const choices = await page.$$eval('#g-select option', (os) => os.map((o) => Number(o.value)));
  check(choices.length >= 2, `G choices ${choices}`);
  for (const g of choices) {
    await page.selectOption('#g-select', String(g));
    await page.waitForFunction((g) => window.gqaState.info.nKvHeads === g && !window.gqaState.busy, g, { timeout: 30_000 });
    const info = await state('s.info');
    const ctx = Number(await page.getAttribute('#kv-bytes', 'data-context'));
    const shown = Number(await page.getAttribute('#kv-bytes', 'data-bytes'));
    const shownMha = Number(await page.getAttribute('#kv-bytes-mha', 'data-bytes'));
    const formula = 2 * info.layers * g * info.headDim * ctx * 4;
    const mha = 2 * info.layers * info.nHeads * info.headDim * ctx * 4;
    check(shown === formula && shownMha === mha && ctx > 0, `G = ${g}: KV bytes shown ${shown} = formula ${formula} (MHA ${shownMha} = ${mha}) at context ${ctx}`);
    check(ctx === (await state('s.contextUsed')), `G = ${g}: at the context the last generation used`);
    // The head-group diagram: H query heads, G key/value heads, query head q wired to q / (H/G).
    const diagram = await page.$eval('#head-diagram', (svg) => ({
      h: Number(svg.dataset.h), g: Number(svg.dataset.g),
      queries: [...svg.querySelectorAll('.q-node')].map((n) => Number(n.dataset.kv)),
      kv: svg.querySelectorAll('.kv-node').length,
    }));
    check(diagram.h === info.nHeads && diagram.g === g && diagram.queries.length === info.nHeads && diagram.kv === g &&
      diagram.queries.every((k, q) => k === Math.floor(q / (info.nHeads / g))),
      `G = ${g}: the diagram wires ${diagram.queries.length} query heads to ${diagram.kv} key/value heads (${diagram.queries.join(',')})`);
    const made = await page.textContent('#head-provenance');
    check(g === info.baseKvHeads ? /MHA|own/.test(made) : /mean of the \d+ heads of its group/.test(made), `G = ${g}: "${made}"`);
  }
  await page.screenshot({ path: `${shots}/head-diagram.png`, fullPage: true });

  // KV precision: f16 halves the KV bytes shown for the same G and context, f32 restores them.
  const kvShown = async () => [Number(await page.getAttribute('#kv-bytes', 'data-bytes')), Number(await page.getAttribute('#kv-bytes', 'data-context'))];
  const [f32Bytes, f32Ctx] = await kvShown();
  await page.selectOption('#kv-dtype', 'f16');
  await page.waitForFunction(() => window.gqaState.info.kvDtype === 'f16' && !window.gqaState.busy, null, { timeout: 30_000 });
  const [f16Bytes, f16Ctx] = await kvShown();
  check(f16Ctx === f32Ctx && f16Bytes * 2 === f32Bytes, `KV cache f16: ${f16Bytes} bytes, half of f32's ${f32Bytes}, at context ${f16Ctx}`);
  await generateAndCheck('tiny preset, f16 KV cache');
  // int8: a quarter of f32's bytes, plus one f32 scale per layer, KV head and position for
  // the keys and one for the values.
  await page.selectOption('#kv-dtype', 'int8');
  await page.waitForFunction(() => window.gqaState.info.kvDtype === 'int8' && !window.gqaState.busy, null, { timeout: 30_000 });
  const [int8Bytes, int8Ctx] = await kvShown();
  const { layers, nKvHeads: kvHeads } = await state('s.info');
  const scales = 2 * layers * kvHeads * int8Ctx * 4;
  check(int8Ctx === f32Ctx && int8Bytes === f32Bytes / 4 + scales,
    `KV cache int8: ${int8Bytes} bytes = a quarter of f32's ${f32Bytes} + ${scales} bytes of scales, at context ${int8Ctx}`);
  const bars = await page.evaluate(() => [parseFloat(document.getElementById('kv-bar').style.width), parseFloat(document.getElementById('kv-bar-mha').style.width)]);
  check(bars[0] < bars[1] && bars[1] < 100 * (1 / 4 + 1 / 16), `the KV bars show G x precision against f32 MHA: ${bars.map((b) => b.toFixed(1)).join('% and ')}%`);
  await generateAndCheck('tiny preset, int8 KV cache');
  await page.selectOption('#kv-dtype', 'f32');
  await page.waitForFunction(() => window.gqaState.info.kvDtype === 'f32' && !window.gqaState.busy, null, { timeout: 30_000 });
  check((await state('s.info.kvDtype')) === 'f32', 'KV cache back to f32');

  // Attention as it happens: with the probe on, the last token's weights per query head
  // (the data behind the canvas) sum to 1, and they change when G changes.
  await page.check('#probe');
  const attentionAfter = async (label) => {
    await page.evaluate(() => { window.gqaState.attention = null; });
    await generateAndCheck(label, { maxTokens: 24, min: 20 });
    await page.waitForFunction(() => window.gqaState.attention, null, { timeout: 30_000 });
    return state('s.attention');
  };
  const before = await attentionAfter(`tiny preset, G = ${await state('s.info.nKvHeads')}, attention recorded`);
  const sums = [];
  for (let h = 0; h < before.nHeads; h++) sums.push(before.weights.slice(h * before.nCtx, (h + 1) * before.nCtx).reduce((a, b) => a + b, 0));
  check(before.nCtx === (await state('s.contextUsed')) && sums.every((s) => Math.abs(s - 1) < 1e-4) && before.tokens.length === before.nCtx,
    `attention of the last token: ${before.nHeads} query heads over ${before.nCtx} positions, rows summing to ${sums.map((s) => s.toFixed(5)).join(', ')}`);
  const box = await page.$eval('#attention-chart', (c) => { const b = c.getBoundingClientRect(); return { x: b.x, y: b.y, w: b.width, h: b.height }; });
  await page.mouse.move(box.x + box.w - 3, box.y + 18 + 7);
  const hover = await page.textContent('#attention-info');
  check(/query head 0 .* position \d+, token .*: weight \d/.test(hover), `hovering a cell: "${hover}"`);
  await page.screenshot({ path: `${shots}/attention.png`, fullPage: true });
  const other = choices.find((g) => g !== before.nKvHeads);
  await page.selectOption('#g-select', String(other));
  await page.waitForFunction((g) => window.gqaState.info.nKvHeads === g && !window.gqaState.busy, other, { timeout: 30_000 });
  const after = await attentionAfter(`tiny preset, G = ${other}, attention recorded`);
  const changed = after.nKvHeads === other && after.weights.some((w, i) => Math.abs(w - before.weights[i]) > 1e-4);
  check(changed, `the attention changes with G: G = ${before.nKvHeads} -> ${after.nKvHeads}, first weights ${before.weights.slice(0, 3).map((w) => w.toFixed(3))} -> ${after.weights.slice(0, 3).map((w) => w.toFixed(3))}`);
  await page.uncheck('#probe');
  await generateAndCheck(`tiny preset, G = ${choices.at(-1)}`);

  // Stop: a long generation on the 15M preset ends early with stop reason "stopped".
  // Greedy: sampled at the earlier tests' temperature, this random model emits its end
  // token after 231 tokens, under a second on 2 threads; greedily it runs to the 2000.
  await loadModel('preset:15m');
  await page.fill('#max-tokens', '2000');
  await page.fill('#temperature', '0');
  await page.click('#generate');
  await page.waitForFunction(() => window.gqaState.tokens > 0 && window.gqaState.busy, null, { timeout: 30_000 });
  // The page's main thread stays responsive while the threaded engine decodes in its
  // worker: the largest gap between 10 ms timer ticks over one second.
  const gap = await page.evaluate(() => new Promise((resolve) => {
    let last = performance.now();
    let worst = 0;
    const timer = setInterval(() => {
      const now = performance.now();
      worst = Math.max(worst, now - last);
      last = now;
    }, 10);
    setTimeout(() => {
      clearInterval(timer);
      resolve(worst);
    }, 1000);
  }));
  check(gap < 100, `the main thread stays responsive during generation on ${await state('s.threads')} threads (largest timer gap ${gap.toFixed(0)} ms)`);
  const prevStats = await state('s.lastStats');
  const stopAt = Date.now();
  await page.click('#stop', { timeout: 5_000 });
  await idle();
  console.log(`MEASURED Stop: the page idle ${Date.now() - stopAt} ms after the click`);
  await page.waitForFunction((prev) => window.gqaState.lastStats !== prev, prevStats, { timeout: 30_000 }).catch(() => {});
  const stopped = await state('s.lastStats');
  check(stopped.stop_reason === 'stopped' || stopped.stop_reason === 'context', `Stop ends the generation (${stopped.stop_reason}, ${stopped.generated_tokens} tokens)`);
  await page.fill('#temperature', '0.8');

  // Compare all G and the long-context sweep fill their table and chart (tiny preset).
  await loadModel('preset:tiny');
  await page.fill('#max-tokens', '16');
  await page.click('#compare-btn');
  await idle();
  const rows = await page.$$eval('#compare-table tbody tr', (rs) => rs.length);
  check(rows === choices.length, `compare all G: ${rows} rows for ${choices.length} choices`);
  const live = await page.$$eval('#compare-table tbody tr td:nth-child(8)', (tds) => tds.map((td) => td.textContent));
  check(live.every((q) => /live/.test(q)) && /^KL 0\.0000, top-1 100\.0%/.test(live[0]), `live quality vs the unconverted model: ${live.join(' | ')}`);
  // Every G with each KV precision: three rows per G, bytes per token falling with G and
  // with precision, and quality against the f32 MHA base (its own row: KL 0).
  const kvBefore = await state('s.info.kvDtype');
  await page.selectOption('#compare-kv', 'each');
  const byPrecision = await compareAt(64);
  await page.screenshot({ path: `${shots}/compare-precisions.png`, fullPage: true });
  await page.selectOption('#compare-kv', '');
  const kvOf = (kv) => byPrecision.filter((r) => r.kv === kv);
  const sameG = (kv) => kvOf(kv).map((r) => r.g).join() === choices.join();
  const cheaper = ['f16', 'int8'].every((kv, i) => kvOf(kv).every((r, j) => r.kvBytes < kvOf(['f32', 'f16'][i])[j].kvBytes));
  check(byPrecision.length === 3 * choices.length && ['f32', 'f16', 'int8'].every(sameG) && cheaper &&
    byPrecision.every((r) => r.quality && r.quality.top1_agreement >= 0 && r.quality.kl_vs_base > -1e-6) && Math.abs(byPrecision[0].quality.kl_vs_base) < 1e-6,
    `compare each KV precision: ${byPrecision.map((r) => `${r.label} ${r.kvBytes} B KV, KL ${r.quality?.kl_vs_base.toFixed(4)}`).join('; ')}`);
  check((await state('s.info.kvDtype')) === kvBefore, `after comparing precisions the engine keeps the precision it had (${kvBefore})`);
  const realRows = await compareAt(200, 'real');
  // A random model may end its text early (end-of-text token): then the row says where.
  check(realRows.length === choices.length && realRows.every((r) => r.context === 200 || (r.context < 200 && /ended at/.test(r.label))),
    `compare at a real context: every G generated up to 200 positions or says where it ended (${realRows.map((r) => `${r.label}: ${r.context}`).join(', ')})`);
  check(/real context of 200/.test(await page.textContent('#compare-label')), `the compare says its context is real: "${await page.textContent('#compare-label')}"`);
  await page.click('#sweep-btn');
  await idle();
  const sweepSeries = await state('Object.keys(s.sweep).length');
  check(sweepSeries === choices.length, `long-context sweep: ${sweepSeries} series`);
  await page.screenshot({ path: `${shots}/compare-sweep.png`, fullPage: true });

  // The user's own llama2.c files (the fixture, when ../shared is present).
  if (existsSync(`${fixture}/stories260K.bin`)) {
    await page.setInputFiles('#file-input', [`${fixture}/stories260K.bin`, `${fixture}/tok512.bin`]);
    await page.waitForFunction(() => window.gqaState.busy, null, { timeout: 5_000 }).catch(() => {});
    await idle();
    const info = await state('s.info');
    check(info.hasTokenizer && info.nHeads === 8, `stories260K loaded from files (H = ${info.nHeads}, G = ${info.nKvHeads})`);
    await page.fill('#prompt', 'Once upon a time');
    await generateAndCheck('stories260K, CPU');
    await page.screenshot({ path: `${shots}/cpu-stories260K.png`, fullPage: true });
  } else {
    skip('stories260K from files', `${fixture} (the shared fixtures)`);
  }

  // A model trained for more positions than this tab's KV cache holds (8192 > 4096): a
  // context above the cache is refused in words.
  await page.setInputFiles('#file-input', hfModelFiles(8192));
  await page.waitForFunction(() => window.gqaState.busy, null, { timeout: 5_000 }).catch(() => {});
  await idle();
  const big = await state('s.info');
  check(big.context === 8192 && big.capacity < big.context, `a model with context ${big.context} gets a KV cache of ${big.capacity} positions`);
  await page.fill('#context', String(big.capacity + 100));
  await page.click('#compare-btn');
  await page.waitForSelector('#error:not([hidden])', { timeout: 10_000 });
  const budget = await page.textContent('#error');
  check(/memory budget/.test(budget) && !(await state('s.busy')), `a context above the KV cache is refused: "${budget}"`);

  // A corrupt file: the error is shown on the page, in words.
  await page.setInputFiles('#file-input', { name: 'corrupt.bin', mimeType: 'application/octet-stream', buffer: Buffer.alloc(1000, 7) });
  await page.waitForSelector('#error:not([hidden])', { timeout: 30_000 });
  const error = await page.textContent('#error');
  check(/llama2\.c checkpoint is invalid/.test(error), `corrupt file shows: "${error}"`);
  await page.screenshot({ path: `${shots}/corrupt-file.png`, fullPage: true });

  // ?threads=1 picks the single-thread module; a bad count is named, and the default used.
  for (const [param, want, why] of [['1', 1, /\?threads=1/], ['lots', Math.min(cores, 64), /\?threads=lots is not a thread count/]]) {
    const other = await browser.newPage();
    await other.goto(`${url}&threads=${param}`);
    await other.waitForFunction(() => window.gqaState?.info && !window.gqaState.busy, null, { timeout: 120_000 });
    const got = await other.evaluate(() => window.gqaState.threads);
    const note = await other.textContent('#backend-note');
    check(got === want && why.test(note), `?threads=${param}: ${got} thread(s), and the note says why: "${note.match(/CPU engine:[^.]*\./)?.[0]}"`);
    await other.close();
  }

  // Plain static hosting: no COOP/COEP headers.
  const plainServer = await serve({ root: www, port: 0, isolate: false });
  const plainUrl = `http://127.0.0.1:${plainServer.address().port}/?test=1`;
  // Waits for the page to settle, across the reload the isolation service worker asks for.
  const settled = async (p) => {
    for (let attempt = 0; ; attempt++) {
      try {
        return await p.waitForFunction(() => window.gqaState?.info && !window.gqaState.busy, null, { timeout: 120_000 });
      } catch (e) {
        if (attempt >= 2 || !/context was destroyed|navigat/i.test(e.message)) throw e;
      }
    }
  };
  // With service workers blocked: one thread, the model still runs, and the note says why.
  const blocked = await browser.newContext({ serviceWorkers: 'block' });
  const single = await blocked.newPage();
  await single.goto(plainUrl);
  await settled(single);
  await startGenerating(single);
  await single.waitForFunction(() => window.gqaState.tokens > 0, null, { timeout: 60_000 });
  const singleNote = await single.textContent('#backend-note');
  check(!(await single.evaluate(() => self.crossOriginIsolated)) && (await single.evaluate(() => window.gqaState.threads)) === 1 &&
    /not cross-origin isolated/.test(singleNote), `served without COOP/COEP (no service worker): it generates on 1 thread and says why: "${singleNote.match(/CPU engine:[^.]*\./)?.[0]}"`);
  await single.screenshot({ path: `${shots}/no-isolation.png`, fullPage: true });
  await blocked.close();
  // With service workers: the page reloads once under coi-sw.js and runs threaded.
  const helped = await browser.newContext();
  const sw = await helped.newPage();
  await sw.goto(plainUrl);
  await settled(sw);
  const swThreads = await sw.evaluate(() => window.gqaState.threads);
  check((await sw.evaluate(() => self.crossOriginIsolated)) && swThreads === Math.min(cores, 64),
    `served without COOP/COEP, the isolation service worker makes the page isolated: ${swThreads} threads`);
  await helped.close();
  plainServer.close();

  // Without ?test=1 the worker has no test hook: 'loseGpu' is an unknown request.
  const plain = await browser.newPage();
  await plain.goto(url.replace('?test=1', ''));
  await plain.waitForFunction(() => window.gqaState && !window.gqaState.busy && window.gqaState.info, null, { timeout: 120_000 });
  await plain.evaluate(() => window.gqaState.worker.postMessage({ type: 'loseGpu' }));
  await plain.waitForSelector('#error:not([hidden])', { timeout: 30_000 }).catch(() => {});
  const refused = await plain.textContent('#error');
  check(/unknown request 'loseGpu'/.test(refused), `without ?test=1 the worker has no loseGpu hook: "${refused}"`);
  await plain.close();

  // The link test's link without a CORS header is refused by the browser, which says so.
  const unexpected = consoleErrors.filter((e) => !/Failed to load resource|blocked by CORS policy/.test(e));
  check(unexpected.length === 0, `no console errors ${unexpected.length ? JSON.stringify(unexpected) : ''}`);
} catch (e) {
  check(false, `e2e aborted: ${e.stack ?? e}`);
  await page.screenshot({ path: `${shots}/aborted.png`, fullPage: true }).catch(() => {});
} finally {
  await browser.close();
  server.close();
}
finish('e2e', ' (screenshots in target/e2e)');
