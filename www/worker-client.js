// worker-client.js: starts the inference worker (worker.js), sends it requests and dispatches its replies.
let worker = null;

// Start a fresh worker, ending the one before. Each reply {type, ...} (messages.js) goes
// to replies[type](reply); a crash of the worker goes to crashed(message).
export function startWorker(replies, crashed) {
  worker?.terminate();
  // The page's ?test=1 (the end-to-end test) turns on the worker's test hooks, and nothing
  // else does; ?kv=f32|f16|int8 sets the KV cache's precision on every engine, and
  // ?threads=N the CPU engine's threads (1: the single-thread build), ?memory=MiB the memory
  // the KV cache is fitted to.
  const page = new URLSearchParams(location.search);
  const params = new URLSearchParams();
  if (page.get('test') === '1') params.set('test', '1');
  if (page.has('kv')) params.set('kv', page.get('kv'));
  if (page.has('threads')) params.set('threads', page.get('threads'));
  if (page.has('memory')) params.set('memory', page.get('memory'));
  const search = params.size ? `?${params}` : '';
  worker = new Worker(new URL(`./worker.js${search}`, import.meta.url), { type: 'module' });
  worker.onmessage = ({ data }) => replies[data.type]?.(data);
  worker.onerror = (e) => {
    e.preventDefault();
    crashed(e.message || 'unknown error');
  };
  return worker;
}

// Send request `type` (messages.js: Request) with its fields; transfer: buffers to move, not copy.
export function send(type, fields = {}, transfer = []) {
  worker.postMessage({ type, ...fields }, transfer);
}
