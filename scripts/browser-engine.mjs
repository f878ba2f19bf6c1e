// The page's wasm engine driven from Node, without the page's UI: headless Chromium
// (Debian's, through playwright-core) opens the demo server (scripts/serve.mjs), and
// each engine runs in its own module Web Worker there, as in the page (the threaded
// module's pool blocks its calling thread, which must not be a page's main thread).
// Used by tests/web/threads.mjs (logits) and scripts/bench-threads.mjs (speed).
//
//   const lab = await openLab();                       // server + browser + blank page
//   const engine = await lab.engine({ threads: 2 });   // pkg-threads with 2 threads; 1: pkg
//   await engine.call('preset', '110m', 1, false, 2048);
//   await engine.call('decodeSpeed', 2048, 16);
//   await lab.close();
import { fileURLToPath } from 'node:url';
import { serve } from './serve.mjs';
import { launchChromium } from './support.mjs';

// The worker: loads a module, builds a Session, and runs calls on it.
//   init {path, threads}: import the module, start its pool; returns its threads()
//   simdName: the module's SIMD flavour
//   preset name seed f16 capacity | hf config weights capacity | fetchHf folder capacity:
//     build the session, returns its info()
//   fetchGguf url capacity: the session from a GGUF file (Session.fromGguf), returns its info()
//   generateIds prompt params: a whole generation, returns the ids
//   generateText prompt params: a whole generation, returns its stats() with its text
//   any other op: a Session method with those arguments
const WORKER = `
let gqa = null;
let session = null;
const ops = {
  async init({ path, threads }) {
    gqa = await import(new URL(path, self.origin).href);
    await gqa.default();
    if (threads > 1) await gqa.initThreadPool(threads);
    return gqa.threads();
  },
  simdName() {
    return gqa.simdName();
  },
  preset(name, seed, f16, capacity) {
    session?.free();
    session = gqa.Session.fromPreset(name, seed, f16, capacity);
    return session.info();
  },
  hf(config, weights, capacity) {
    session?.free();
    session = gqa.Session.fromHf(config, Uint8Array.from(atob(weights), (c) => c.charCodeAt(0)), undefined, capacity);
    return session.info();
  },
  async fetchHf(folder, capacity) {
    const get = async (file) => {
      const r = await fetch(new URL(folder + '/' + file, self.origin));
      if (!r.ok) throw new Error(folder + '/' + file + ': HTTP ' + r.status);
      return r;
    };
    const config = await (await get('config.json')).text();
    const weights = new Uint8Array(await (await get('model.safetensors')).arrayBuffer());
    const tokenizer = new Uint8Array(await (await get('tokenizer.json')).arrayBuffer());
    session?.free();
    session = gqa.Session.fromHf(config, weights, tokenizer, capacity);
    return session.info();
  },
  // A GGUF file (e.g. SmolLM2's, quantized): the module's Session.fromGguf(bytes, capacity)
  // reads weights, config and tokenizer from the one file.
  async fetchGguf(url, capacity) {
    if (typeof gqa.Session.fromGguf !== 'function') throw new Error('this wasm build has no Session.fromGguf (rebuild with scripts/build-web.sh)');
    const r = await fetch(new URL(url, self.origin));
    if (!r.ok) throw new Error(url + ': HTTP ' + r.status);
    const bytes = new Uint8Array(await r.arrayBuffer());
    session?.free();
    session = gqa.Session.fromGguf(bytes, capacity);
    return session.info();
  },
  async generateText(prompt, params) {
    let text = '';
    const stats = await session.generate(prompt, params, (piece) => {
      text += piece;
      return true;
    });
    return { ...stats, text };
  },
  async generateIds(prompt, params) {
    const ids = [];
    await session.generate(prompt, params, (text, id) => {
      if (id !== undefined) ids.push(id);
      return true;
    });
    return ids;
  },
};
onmessage = async ({ data: { id, op, args } }) => {
  try {
    const result = ops[op] ? await ops[op](...args) : await session[op](...args);
    postMessage({ id, result });
  } catch (e) {
    postMessage({ id, error: String(e?.message ?? e) });
  }
};
`;

// The page side: engines by number, each call a promise settled by the worker's reply.
function pageSide() {
  let next = 0;
  const engines = [];
  const pending = new Map();
  window.labEngine = () => {
    const worker = new Worker('/lab-worker.js', { type: 'module' });
    worker.onmessage = ({ data }) => {
      const { resolve, reject } = pending.get(data.id);
      pending.delete(data.id);
      if ('error' in data) reject(new Error(data.error));
      else resolve(data.result);
    };
    worker.onerror = (e) => {
      for (const { reject } of pending.values()) reject(new Error(e.message || 'worker error'));
      pending.clear();
    };
    engines.push(worker);
    return engines.length - 1;
  };
  window.labCall = (engine, op, args) => new Promise((resolve, reject) => {
    const id = next++;
    pending.set(id, { resolve, reject });
    engines[engine].postMessage({ id, op, args });
  });
  window.labClose = (engine) => engines[engine].terminate();
}

// isolate: whether the server sends COOP/COEP (the threaded module needs them).
export async function openLab({ isolate = true } = {}) {
  const root = fileURLToPath(new URL('../www', import.meta.url));
  const server = await serve({ root, port: 0, isolate });
  const browser = await launchChromium();
  const page = await browser.newPage();
  // A page of the server's origin (the engines fetch modules and models from it); the
  // blank body keeps the page's own scripts out of the measurement.
  // (A worker from a blob: URL would not share the page's cross-origin isolation.)
  const headers = isolate ? { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' } : {};
  await page.route('**/lab.html', (route) => route.fulfill({ status: 200, contentType: 'text/html', headers, body: '<!doctype html><title>lab</title>' }));
  await page.route('**/lab-worker.js', (route) => route.fulfill({ status: 200, contentType: 'text/javascript', headers, body: WORKER }));
  await page.goto(`http://127.0.0.1:${server.address().port}/lab.html`);
  await page.evaluate(`(${pageSide})()`);
  return {
    page,
    isolated: await page.evaluate(() => self.crossOriginIsolated),
    // An engine: the threaded module with `threads` threads, or the single-thread one for 1.
    async engine({ threads }) {
      const id = await page.evaluate(() => window.labEngine());
      const engine = {
        threads: 0,
        call: (op, ...args) => page.evaluate(([e, o, a]) => window.labCall(e, o, a), [id, op, args]),
        close: () => page.evaluate((e) => window.labClose(e), id),
      };
      engine.threads = await engine.call('init', { path: threads > 1 ? '/pkg-threads/gqa.js' : '/pkg/gqa.js', threads });
      return engine;
    },
    async close() {
      await browser.close();
      server.close();
    },
  };
}
