// messages.js: the protocol between the page (app.js, through worker-client.js) and its
// inference worker (worker.js), the one definition both sides use. Every message is
// {type, ...fields}; the comments list each type's fields.

// Requests, page to worker. The worker answers one request at a time; a request that
// arrives while another runs gets an 'error' reply, except 'stop'.
export const Request = Object.freeze({
  // {source, capacity, backend, kvDtype?}: open a session from a model source (sources.js)
  // with a KV cache of `capacity` positions (in kvDtype when given, else the precision set
  // by 'kvDtype' below); replies 'backend', then 'loaded'.
  load: 'load',
  // {want: 'auto' | 'webgpu' | 'cpu'}: the engine to run on; replies 'backend', then 'info'.
  backend: 'backend',
  // {dtype: 'f32' | 'f16' | 'int8' | ''}: the KV cache's precision ('': each engine's
  // default), for the session loaded and those loaded after; replies 'info'.
  kvDtype: 'kvDtype',
  // {on}: record each generated token's attention weights (kept across loads).
  setAttentionProbe: 'setAttentionProbe',
  // {layer}: the last token's attention weights in a layer; replies 'attention'.
  attention: 'attention',
  // {g, method, seed, probe?}: convert the loaded model to g key/value heads; replies
  // 'info', then, given a probe (a fixed text or chat, quality.js) and a G other than the
  // model's own, 'quality'.
  setGroups: 'setGroups',
  // {prompt, params: {maxTokens, temperature, topP, topK, seed}}: replies 'token' per
  // token, then 'done'. prompt: text to continue, or a chat, [{role, content}], rendered in
  // the model's chat template with the assistant's turn opened (chat.js).
  generate: 'generate',
  // Ends the generation or measurement in progress.
  stop: 'stop',
  // {prompt, params, groups, method, seed, context, mode, checkpoints, kvDtypes}: every G
  // at one context (worker-measure.js); replies 'compareRow's, 'compareSpeed's, 'finished'.
  compare: 'compare',
  // {groups, contexts, steps, method, seed}: decode speed against context for each G;
  // replies 'sweepPoint's, then 'finished'.
  sweep: 'sweep',
  // Test hook, only for a page opened with ?test=1: destroys the GPU devices the engine
  // opened, which is what a lost device looks like to it.
  loseGpu: 'loseGpu',
});

// Replies, worker to page.
export const Reply = Object.freeze({
  // {simd, threads, threadsWhy, webgpu: {available, software, reason}}: the module started.
  ready: 'ready',
  // {info, ms}: a model was loaded (info: the session's info()).
  loaded: 'loaded',
  // {gpu, reason}: the engine in use, and why.
  backend: 'backend',
  // {info, convertMs?}: the model or engine changed.
  info: 'info',
  // {text, stats}: one generated token (stats: null on WebGPU).
  token: 'token',
  // {text, stats, ids}: the generation ended (stats: null when the GPU was lost).
  done: 'done',
  // {view}: the attention probe's record of a layer (null before a generation with it on).
  attention: 'attention',
  // {g, method, tokens, klVsBase, top1Agreement}: how far G's next-token predictions are
  // from the model's own G on the probe (after 'info' of a setGroups).
  quality: 'quality',
  // {message, info}: the GPU failed; the worker now runs on the CPU.
  gpuLost: 'gpuLost',
  // {g, checkpoint, quality, tokS, context, requested, mode, backend, kvDtype, text,
  //  kvBytes, bytesPerToken, nHeads}: one row of a compare.
  compareRow: 'compareRow',
  // {index, tokS, rounds}: a compare row's speed after another round.
  compareSpeed: 'compareSpeed',
  // {g, ctx, tokS}: one point of a sweep.
  sweepPoint: 'sweepPoint',
  // {what: 'compare' | 'sweep', info}: a compare or sweep ended.
  finished: 'finished',
  // {message, request, fatal?}: a request failed (fatal: the module aborted).
  error: 'error',
});
