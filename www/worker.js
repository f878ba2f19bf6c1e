// The inference worker: owns the wasm Session so the page stays responsive.
// Messages in:  {type: 'load' | 'backend' | 'kvDtype' | 'setAttentionProbe' | 'attention' | 'setGroups' | 'generate' | 'stop' | 'compare' |
//                'sweep' | 'loseGpu' (with ?test=1 only), ...}
// Messages out: {type: 'ready' | 'loaded' | 'backend' | 'info' | 'token' | 'done' | 'attention' |
//                'gpuLost' | 'compareRow' | 'compareSpeed' | 'sweepPoint' | 'finished' | 'error', ...}
// Generation runs a few tokens at a time and yields between batches, so 'stop' arrives.
// The wasm module is one of two builds (scripts/build-web.sh), chosen in chooseModule below.
let gqa = null;

let session = null;
let stopRequested = false;
let busy = false;
// The backend the page asked for: 'auto' (WebGPU when available), 'webgpu' or 'cpu'.
let wantBackend = 'auto';
let webgpu = { available: false, reason: 'not checked yet' };

const post = (msg) => postMessage(msg);

// Test hooks, only for a page loaded with ?test=1 (app.js passes it on to this worker;
// tests/web/e2e.mjs opens the page so): 'loseGpu' destroys the GPU devices the engine
// opened, which is what a lost device looks like to it (the test of the CPU fallback).
const testing = new URL(self.location.href).searchParams.get('test') === '1';
// The KV cache's precision for the sessions opened here: the page's ?kv=, then its KV
// control (unset: f32 on the CPU, f16 on WebGPU).
let kvDtype = new URL(self.location.href).searchParams.get('kv') ?? undefined;
// The attention probe, kept on across model loads once the page turns it on.
let probeOn = false;
const devices = [];
if (testing && self.GPUAdapter) {
  const requestDevice = GPUAdapter.prototype.requestDevice;
  GPUAdapter.prototype.requestDevice = async function (...args) {
    const device = await requestDevice.apply(this, args);
    devices.push(device);
    return device;
  };
}
// Yield to the event loop (so 'stop' can arrive). A MessageChannel, not setTimeout,
// whose nested calls are clamped to 4 ms and would slow fast models down.
const channel = new MessageChannel();
const tick = () => new Promise((resolve) => {
  channel.port1.onmessage = resolve;
  channel.port2.postMessage(null);
});
// Yield to the event loop at most this often while generating (ms).
const SLICE_MS = 25;

const handlers = {
  async load({ source, capacity, backend }) {
    wantBackend = backend ?? wantBackend;
    const t0 = performance.now();
    // The new session is built before the old one is freed: a file that fails to load
    // leaves the model the page shows loaded and usable.
    const loaded = openSession(source, capacity);
    if (probeOn) loaded.setAttentionProbe(true);
    session?.free();
    session = loaded;
    await applyBackend();
    post({ type: 'loaded', info: session.info(), ms: performance.now() - t0 });
  },

  async backend({ want }) {
    wantBackend = want;
    if (session) {
      await applyBackend();
      post({ type: 'info', info: session.info() });
    }
  },

  // The KV cache's precision ('f32', 'f16', 'int8', or '' for the engines' defaults): the engine in
  // use is opened again with it, and so are the sessions loaded after.
  async kvDtype({ dtype }) {
    await requireSession().setKvDtype(dtype);
    kvDtype = dtype || undefined;
    post({ type: 'info', info: session.info() });
  },

  // The attention probe: on, each generated token's attention weights are recorded, and
  // 'attention' reads one layer's for the last token.
  setAttentionProbe({ on }) {
    requireSession().setAttentionProbe(on);
    probeOn = on;
  },

  async attention({ layer }) {
    post({ type: 'attention', view: await requireSession().attention(layer) });
  },

  async setGroups({ g, method, seed }) {
    const t0 = performance.now();
    requireSession().setGroups(g, method, seed);
    post({ type: 'info', info: session.info(), convertMs: performance.now() - t0 });
  },

  async generate({ prompt, params }) {
    const result = await generate(prompt, params, (text, stats) => post({ type: 'token', text, stats }));
    post({ type: 'done', ...result });
  },

  stop() {
    stopRequested = true;
  },

  // Every G at one context, the model's own G first, then the shipped uptrained checkpoints
  // (`checkpoints`: [{g, source}], each loaded into a session of its own for its row). The
  // speed at `context`: mode 'synthetic' fills the KV cache with synthetic values and times
  // decode steps (as the sweep does); mode 'real' generates from the prompt until the cache
  // holds `context` positions and times the last tokens. Each row also has a short text (the
  // same prompt, settings and seed for every G) and its quality against the unconverted
  // model with an f32 KV cache, measured live on the tokens the first row generated.
  // kvDtypes: a list of KV precisions to run all of the above with, in turn (null: the
  // precision in use only).
  async compare({ prompt, params, groups, method, seed, context, mode, checkpoints = [], kvDtypes = null }) {
    const main = requireSession();
    const restore = main.info().n_kv_heads;
    const restoreKv = kvDtype;
    let reference = null;
    // Each row's tok/s samples, in the order the rows were posted.
    const timed = [];
    // The KV precision of the rows to come (null: as the page set it): the main session's
    // engine is opened again with it, and the checkpoints' sessions are opened with it.
    const usePrecision = async (kv) => {
      if (kv === null) return;
      if (main.info().kv_dtype !== kv) await main.setKvDtype(kv);
      kvDtype = kv;
    };
    // Run `f` on an uptrained checkpoint's own session, opened for the call.
    const withCheckpoint = async (source, f) => {
      session = openSession(source, main.info().capacity);
      try {
        await applyBackend(false);
        return await f();
      } finally {
        session.free();
        session = main;
      }
    };
    try {
      for (const kv of kvDtypes ?? [null]) {
        if (stopRequested) break;
        await usePrecision(kv);
        for (const g of groups) {
          if (stopRequested) break;
          session.setGroups(g, method, seed);
          const row = await measureAt(prompt, params, context, mode);
          if (!row) break; // the GPU was lost
          reference ??= row.ids;
          const quality = reference.length >= 2 ? session.qualityVsBase(Uint32Array.from(reference)) : null;
          delete row.ids;
          timed.push({ g, kv, source: null, samples: [row.tokS] });
          post({ type: 'compareRow', g, checkpoint: null, quality, ...row });
        }
        for (const { g, dir, source } of checkpoints) {
          if (stopRequested) break;
          const row = await withCheckpoint(source, () => measureAt(prompt, params, context, mode));
          if (!row) break;
          delete row.ids;
          timed.push({ g, kv, source, samples: [row.tokS] });
          post({ type: 'compareRow', g, checkpoint: dir, quality: null, ...row });
        }
      }
      // On a synthetic context, further rounds time every row once more, in the same order,
      // so that a slow spell of a shared machine slows every G alike; each row then shows
      // the median of its rounds.
      for (let round = 1; mode !== 'real' && round < COMPARE_ROUNDS; round++) {
        for (const [index, t] of timed.entries()) {
          if (stopRequested) return;
          await usePrecision(t.kv);
          const time = () => onGpuFailure(() => session.decodeSpeed(context, TIMED_STEPS));
          if (t.source) t.samples.push(await withCheckpoint(t.source, time));
          else {
            session.setGroups(t.g, method, seed);
            t.samples.push(await time());
          }
          post({ type: 'compareSpeed', index, tokS: median(t.samples), rounds: t.samples.length });
        }
      }
    } finally {
      session = main;
      if (kvDtypes) {
        await main.setKvDtype(restoreKv ?? '');
        kvDtype = restoreKv;
      }
      session.setGroups(restore, method, seed);
      post({ type: 'finished', what: 'compare', info: session.info() });
    }
  },

  // Decode tokens/s against context length for each G, on a synthetic KV cache.
  async sweep({ groups, contexts, steps, method, seed }) {
    const restore = requireSession().info().n_kv_heads;
    try {
      for (const g of groups) {
        session.setGroups(g, method, seed);
        for (const ctx of contexts) {
          if (stopRequested) return;
          if (ctx > session.info().capacity) continue;
          post({ type: 'sweepPoint', g, ctx, tokS: await onGpuFailure(() => session.decodeSpeed(ctx, steps)) });
          await tick();
        }
      }
    } finally {
      session.setGroups(restore, method, seed);
      post({ type: 'finished', what: 'sweep', info: session.info() });
    }
  },
};

// A session from a load source (hf, llama2c or preset) with a KV cache of `capacity` positions.
function openSession(source, capacity) {
  const tok = source.tokenizer ? new Uint8Array(source.tokenizer) : undefined;
  if (source.kind === 'hf') return gqa.Session.fromHf(source.config, new Uint8Array(source.weights), tok, capacity, kvDtype);
  if (source.kind === 'llama2c') return gqa.Session.fromLlama2c(new Uint8Array(source.weights), tok, capacity, kvDtype);
  if (source.kind === 'preset') return gqa.Session.fromPreset(source.name, source.seed, !!source.f16, capacity, kvDtype);
  throw new Error(`unknown model source '${source.kind}'`);
}

// Decode steps timed per synthetic measurement, and tokens timed at the end of a real one.
const TIMED_STEPS = 48;
// Interleaved rounds of compare on a synthetic context (see compare).
const COMPARE_ROUNDS = 3;

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

// The session's decode speed at `context` positions ('synthetic' or 'real', see compare),
// and a text from the prompt with `params`. Null when the GPU was lost.
async function measureAt(prompt, params, context, mode) {
  const info = session.info();
  let tokS, reached, text, ids;
  if (mode === 'real') {
    const promptTokens = session.promptTokens(prompt);
    if (promptTokens + TIMED_STEPS > context) throw new Error(`the prompt takes ${promptTokens} positions: choose a context of at least ${promptTokens + TIMED_STEPS}`);
    const times = [];
    const run = await generate(prompt, { ...params, maxTokens: context - promptTokens }, () => times.push(performance.now()));
    if (!run.stats) return null;
    const k = Math.min(TIMED_STEPS, times.length - 1);
    tokS = k > 0 ? (1000 * k) / (times.at(-1) - times.at(-1 - k)) : 0;
    reached = promptTokens + times.length;
    ({ text, ids } = run);
  } else {
    tokS = await onGpuFailure(() => session.decodeSpeed(context, TIMED_STEPS));
    reached = context;
    const run = await generate(prompt, params, () => {});
    if (!run.stats) return null;
    ({ text, ids } = run);
  }
  const kvBytes = info.kv_bytes_per_position * reached;
  return {
    tokS, context: reached, requested: context, mode, backend: info.backend, kvDtype: info.kv_dtype, text: text.slice(0, 200), ids,
    kvBytes, bytesPerToken: info.weight_bytes + kvBytes, nHeads: info.n_heads,
  };
}

function requireSession() {
  if (!session) throw new Error('no model is loaded yet');
  return session;
}

// Use WebGPU when asked for and available ('auto': unless it is the browser's software
// fallback adapter, which is slower than the CPU engine); otherwise the CPU, saying why.
// report: whether to tell the page (not for the sessions compare opens for a row).
async function applyBackend(report = true) {
  const post = report ? self.postMessage.bind(self) : () => {};
  const gpu = webgpu.available && (wantBackend === 'webgpu' || (wantBackend === 'auto' && !webgpu.software));
  if (gpu && !session.usesGpu()) {
    try {
      const name = await session.useGpu();
      post({ type: 'backend', gpu: true, reason: name });
    } catch (e) {
      post({ type: 'backend', gpu: false, reason: `WebGPU could not run this model: ${e.message}` });
    }
  } else if (!gpu) {
    session.useCpu();
    const reason = wantBackend === 'cpu' ? 'CPU chosen'
      : webgpu.available ? 'WebGPU here is a software fallback adapter, slower than the CPU engine (choose WebGPU to use it anyway)'
      : `WebGPU unavailable: ${webgpu.reason}`;
    post({ type: 'backend', gpu: false, reason });
  }
}

// Run f on the GPU; if the GPU fails (device lost, out of memory), switch to the CPU,
// tell the page, and rethrow so the request reports the error.
async function onGpuFailure(f) {
  const onGpu = session.usesGpu();
  try {
    return await f();
  } catch (e) {
    if (onGpu) {
      session.useCpu();
      post({ type: 'gpuLost', message: e?.message ?? String(e), info: session.info() });
    }
    throw e;
  }
}

// Generate on the backend in use; onToken(text, stats) for each token. On the CPU,
// start, then take tokens in time slices, yielding between them. On WebGPU the engine
// awaits the GPU every token, so messages (Stop) arrive meanwhile; there are no
// per-token statistics.
async function generate(prompt, params, onToken) {
  let text = '';
  const ids = [];
  if (requireSession().usesGpu()) {
    try {
      const stats = await onGpuFailure(() =>
        session.generate(prompt, params, (piece, id) => {
          text += piece;
          if (id !== undefined) ids.push(id);
          onToken(piece, null);
          return !stopRequested;
        }));
      return { text, stats, ids };
    } catch (e) {
      if (session.usesGpu()) throw e;
      // The GPU was lost: the text so far stays; the page continues on the CPU.
      return { text, stats: null, ids };
    }
  }
  session.start(prompt, params);
  for (;;) {
    const sliceEnd = performance.now() + SLICE_MS;
    do {
      if (stopRequested) session.stop();
      const piece = session.nextToken();
      text += piece.text;
      if (piece.done) return { text, stats: session.stats(), ids };
      ids.push(piece.id);
      onToken(piece.text, session.stats());
    } while (performance.now() < sliceEnd);
    await tick();
  }
}

// An error in words. A WebAssembly.RuntimeError means the module aborted: a panic (its
// message) or, without one, an allocation that failed.
function describe(e) {
  if (e instanceof WebAssembly.RuntimeError) {
    const panic = gqa.lastPanic();
    return panic ? `internal error: ${panic}` : `out of memory (${e.message}): the model does not fit in this tab's memory`;
  }
  return e?.message ?? String(e);
}

self.onmessage = async ({ data }) => {
  if (data.type === 'stop') return handlers.stop();
  if (testing && data.type === 'loseGpu') return devices.forEach((d) => d.destroy());
  if (!Object.hasOwn(handlers, data.type)) return post({ type: 'error', message: `unknown request '${data.type}'`, request: data.type });
  if (busy) return post({ type: 'error', message: 'the model is busy; press Stop first', request: data.type });
  busy = true;
  stopRequested = false;
  try {
    await handlers[data.type](data);
  } catch (e) {
    post({ type: 'error', message: describe(e), request: data.type, fatal: e instanceof WebAssembly.RuntimeError });
  } finally {
    busy = false;
  }
};

// Which build to load, and why: the threaded one (pkg-threads: rayon's pool in Web Workers,
// on shared memory, and relaxed SIMD's fused multiply-add) needs a cross-origin isolated page
// and a browser with relaxed SIMD; ?threads=N sets the pool's size and ?threads=1 picks the
// single-thread build (pkg, plain simd128).
const MAX_THREADS = 64;
// A module whose one function uses i8x16.relaxed_swizzle: valid only where relaxed SIMD is.
const RELAXED_SIMD_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 15, 1, 13, 0,
  65, 1, 253, 15, 65, 2, 253, 15, 253, 128, 2, 11]);
function chooseModule() {
  const asked = new URL(self.location.href).searchParams.get('threads');
  const cores = navigator.hardwareConcurrency || 1;
  let note = '';
  let n = Math.min(cores, MAX_THREADS);
  if (asked !== null) {
    if (/^[0-9]+$/.test(asked) && Number(asked) >= 1 && Number(asked) <= MAX_THREADS) {
      n = Number(asked);
      note = `?threads=${n}`;
    } else {
      note = `?threads=${asked} is not a thread count from 1 to ${MAX_THREADS}, so ${n} (this device's cores)`;
    }
  }
  if (n === 1) return { path: './pkg/gqa.js', threads: 1, why: note || 'this device reports one core' };
  if (!self.crossOriginIsolated || typeof SharedArrayBuffer !== 'function') {
    return {
      path: './pkg/gqa.js', threads: 1,
      why: 'the page is not cross-origin isolated: its server sends no COOP/COEP headers and no service worker ' +
        `added them, so threads cannot share memory${note ? `; ${note} is ignored` : ''}`,
    };
  }
  if (!WebAssembly.validate(RELAXED_SIMD_PROBE)) {
    return {
      path: './pkg/gqa.js', threads: 1,
      why: `this browser has no WebAssembly relaxed SIMD, which the threaded build uses${note ? `; ${note} is ignored` : ''}`,
    };
  }
  return { path: './pkg-threads/gqa.js', threads: n, why: note || 'one per core' };
}

try {
  const chosen = chooseModule();
  gqa = await import(chosen.path);
  await gqa.default();
  if (chosen.threads > 1) await gqa.initThreadPool(chosen.threads);
  webgpu = await gqa.webgpuStatus();
  post({ type: 'ready', simd: gqa.simdName(), threads: gqa.threads(), threadsWhy: chosen.why, webgpu });
} catch (e) {
  post({ type: 'error', message: `could not start the wasm module: ${e?.message ?? e}`, request: 'init' });
}
