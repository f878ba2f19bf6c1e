// worker-session.js: the worker's sessions (the wasm module's Session): opening one from a
// model source, choosing its engine, falling back to the CPU when the GPU fails, and
// generating on it. Each function acts on the session it is given.
import { Reply } from './messages.js';

export const post = (msg) => self.postMessage(msg);

// What the worker's sessions are opened and run with. worker.js sets the module and
// WebGPU's status once; the page's requests set the rest, which holds across model loads.
export const settings = {
  gqa: null,
  webgpu: { available: false, reason: 'not checked yet' },
  // The engine the page asked for: 'auto' (WebGPU when available), 'webgpu' or 'cpu'.
  wantBackend: 'auto',
  // The KV cache's precision: the page's ?kv=, then its KV control (unset: f32 on the CPU,
  // f16 on WebGPU).
  kvDtype: new URL(self.location.href).searchParams.get('kv') ?? undefined,
  // The attention probe, kept on across model loads once the page turns it on.
  probeOn: false,
  // The page asked to stop the request in progress (cleared as each request starts).
  stopRequested: false,
};

// Yield to the event loop (so 'stop' can arrive). A MessageChannel, not setTimeout, whose
// nested calls are clamped to 4 ms.
const channel = new MessageChannel();
export const tick = () => new Promise((resolve) => {
  channel.port1.onmessage = resolve;
  channel.port2.postMessage(null);
});
// Yield to the event loop at most this often while generating (ms).
const SLICE_MS = 25;

// A session from a load source (hf, gguf, llama2c or preset) with a KV cache of `capacity`
// positions, in `kvDtype` (default: the page's setting, else each engine's default).
export function openSession(source, capacity, kvDtype = settings.kvDtype) {
  const { gqa } = settings;
  const tok = source.tokenizer ? new Uint8Array(source.tokenizer) : undefined;
  if (source.kind === 'gguf') return gqa.Session.fromGguf(new Uint8Array(source.weights), capacity, kvDtype);
  if (source.kind === 'hf') return gqa.Session.fromHf(source.config, new Uint8Array(source.weights), tok, capacity, kvDtype);
  if (source.kind === 'llama2c') return gqa.Session.fromLlama2c(new Uint8Array(source.weights), tok, capacity, kvDtype);
  if (source.kind === 'preset') return gqa.Session.fromPreset(source.name, source.seed, !!source.f16, capacity, kvDtype);
  throw new Error(`unknown model source '${source.kind}'`);
}

// Run `session` on WebGPU when asked for and available ('auto': unless it is the browser's
// software fallback adapter, which is slower than the CPU engine); otherwise on the CPU,
// saying why. report: whether to tell the page (not for the sessions compare opens for a row).
export async function applyBackend(session, { report = true } = {}) {
  const tell = report ? post : () => {};
  const { webgpu, wantBackend } = settings;
  const gpu = webgpu.available && (wantBackend === 'webgpu' || (wantBackend === 'auto' && !webgpu.software));
  if (gpu && !session.usesGpu()) {
    try {
      const name = await session.useGpu();
      tell({ type: Reply.backend, gpu: true, reason: name });
    } catch (e) {
      tell({ type: Reply.backend, gpu: false, reason: `WebGPU could not run this model: ${e.message}` });
    }
  } else if (!gpu) {
    session.useCpu();
    const reason = wantBackend === 'cpu' ? 'CPU chosen'
      : webgpu.available ? 'WebGPU here is a software fallback adapter, slower than the CPU engine (choose WebGPU to use it anyway)'
      : `WebGPU unavailable: ${webgpu.reason}`;
    tell({ type: Reply.backend, gpu: false, reason });
  }
}

// Run f on `session`'s GPU; if the GPU fails (device lost, out of memory), switch the
// session to the CPU, tell the page, and rethrow so the request reports the error.
export async function onGpuFailure(session, f) {
  const onGpu = session.usesGpu();
  try {
    return await f();
  } catch (e) {
    if (onGpu) {
      session.useCpu();
      post({ type: Reply.gpuLost, message: e?.message ?? String(e), info: session.info() });
    }
    throw e;
  }
}

// Generate on `session`'s engine; onToken(text, stats) for each token. Resolves to
// {text, stats, ids}, with stats null when the GPU was lost. On the CPU: start, then take
// tokens in time slices, yielding between them. On WebGPU the engine awaits the GPU every
// token, so messages (Stop) arrive meanwhile; there are no per-token statistics.
export async function generate(session, prompt, params, onToken) {
  let text = '';
  const ids = [];
  if (session.usesGpu()) {
    try {
      const stats = await onGpuFailure(session, () =>
        session.generate(prompt, params, (piece, id) => {
          text += piece;
          if (id !== undefined) ids.push(id);
          onToken(piece, null);
          return !settings.stopRequested;
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
      if (settings.stopRequested) session.stop();
      const piece = session.nextToken();
      text += piece.text;
      if (piece.done) return { text, stats: session.stats(), ids };
      ids.push(piece.id);
      onToken(piece.text, session.stats());
    } while (performance.now() < sliceEnd);
    await tick();
  }
}
