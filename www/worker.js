// The inference worker: owns the wasm Session so the page stays responsive. It answers the
// requests of messages.js one at a time (except 'stop'); the jobs live in worker-module.js
// (which build to load), worker-session.js (sessions, engines, generation) and
// worker-measure.js (compare and sweep).
import { Request, Reply } from './messages.js';
import { chooseModule } from './worker-module.js';
import { settings, post, openSession, applyBackend, generate } from './worker-session.js';
import { compare, sweep } from './worker-measure.js';

// The session of the model the page shows (null before the first load).
let session = null;
let busy = false;

// Test hooks, only for a page loaded with ?test=1 (app.js passes it on to this worker;
// tests/web/e2e.mjs opens the page so): 'loseGpu' destroys the GPU devices the engine
// opened, which is what a lost device looks like to it (the test of the CPU fallback).
const testing = new URL(self.location.href).searchParams.get('test') === '1';
const devices = [];
if (testing && self.GPUAdapter) {
  const requestDevice = GPUAdapter.prototype.requestDevice;
  GPUAdapter.prototype.requestDevice = async function (...args) {
    const device = await requestDevice.apply(this, args);
    devices.push(device);
    return device;
  };
}

function requireSession() {
  if (!session) throw new Error('no model is loaded yet');
  return session;
}

const handlers = {
  async [Request.load]({ source, capacity, backend, kvDtype }) {
    settings.wantBackend = backend ?? settings.wantBackend;
    const t0 = performance.now();
    // The new session is built before the old one is freed: a file that fails to load
    // leaves the model the page shows loaded and usable.
    const loaded = openSession(source, capacity, kvDtype ?? settings.kvDtype);
    if (settings.probeOn) loaded.setAttentionProbe(true);
    session?.free();
    session = loaded;
    await applyBackend(session);
    post({ type: Reply.loaded, info: session.info(), ms: performance.now() - t0 });
  },

  async [Request.backend]({ want }) {
    settings.wantBackend = want;
    if (session) {
      await applyBackend(session);
      post({ type: Reply.info, info: session.info() });
    }
  },

  async [Request.kvDtype]({ dtype }) {
    await requireSession().setKvDtype(dtype);
    settings.kvDtype = dtype || undefined;
    post({ type: Reply.info, info: session.info() });
  },

  [Request.setAttentionProbe]({ on }) {
    requireSession().setAttentionProbe(on);
    settings.probeOn = on;
  },

  async [Request.attention]({ layer }) {
    post({ type: Reply.attention, view: await requireSession().attention(layer) });
  },

  [Request.setGroups]({ g, method, seed, probe }) {
    const t0 = performance.now();
    requireSession().setGroups(g, method, seed);
    post({ type: Reply.info, info: session.info(), convertMs: performance.now() - t0 });
    if (probe && g !== session.info().baseKvHeads) {
      const report = session.qualityVsBase(session.promptIds(probe));
      post({ type: Reply.quality, g, method, tokens: report.tokens, klVsBase: report.kl_vs_base, top1Agreement: report.top1_agreement });
    }
  },

  async [Request.generate]({ prompt, params }) {
    const result = await generate(requireSession(), prompt, params, (text, stats) => post({ type: Reply.token, text, stats }));
    post({ type: Reply.done, ...result });
  },

  [Request.compare]: (request) => compare(requireSession(), request),
  [Request.sweep]: (request) => sweep(requireSession(), request),
};

// An error in words. A WebAssembly.RuntimeError means the module aborted: a panic (its
// message) or, without one, an allocation that failed.
function describe(e) {
  if (e instanceof WebAssembly.RuntimeError) {
    const panic = settings.gqa.lastPanic();
    return panic ? `internal error: ${panic}` : `out of memory (${e.message}): the model does not fit in this tab's memory`;
  }
  return e?.message ?? String(e);
}

self.onmessage = async ({ data }) => {
  if (data.type === Request.stop) {
    settings.stopRequested = true;
    return;
  }
  if (testing && data.type === Request.loseGpu) return devices.forEach((d) => d.destroy());
  if (!Object.hasOwn(handlers, data.type)) return post({ type: Reply.error, message: `unknown request '${data.type}'`, request: data.type });
  if (busy) return post({ type: Reply.error, message: 'the model is busy; press Stop first', request: data.type });
  busy = true;
  settings.stopRequested = false;
  try {
    await handlers[data.type](data);
  } catch (e) {
    post({ type: Reply.error, message: describe(e), request: data.type, fatal: e instanceof WebAssembly.RuntimeError });
  } finally {
    busy = false;
  }
};

try {
  const chosen = chooseModule();
  const gqa = await import(chosen.path);
  await gqa.default();
  if (chosen.threads > 1) await gqa.initThreadPool(chosen.threads);
  settings.gqa = gqa;
  // ?memory=MiB: fit KV caches as if this tab could hold only that much (see the
  // module's kv_fit), e.g. to see what a phone would open a model with.
  const memory = new URL(self.location.href).searchParams.get('memory');
  if (memory !== null) {
    if (/^[1-9][0-9]{0,5}$/.test(memory)) gqa.setMemoryLimit(Number(memory));
    else post({ type: Reply.error, message: `?memory=${memory} is not a number of MiB from 1 to 999999; it is ignored`, request: 'init' });
  }
  settings.webgpu = await gqa.webgpuStatus();
  post({ type: Reply.ready, simd: gqa.simdName(), threads: gqa.threads(), threadsWhy: chosen.why, webgpu: settings.webgpu });
} catch (e) {
  post({ type: Reply.error, message: `could not start the wasm module: ${e?.message ?? e}`, request: 'init' });
}
