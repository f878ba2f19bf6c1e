// worker-measure.js: the worker's measurements, 'compare' and 'sweep' (messages.js): decode
// speed, text and quality for each G, on the session they are given.
import { Reply } from './messages.js';
import { settings, post, tick, openSession, applyBackend, onGpuFailure, generate } from './worker-session.js';

// Decode steps timed per synthetic measurement, and tokens timed at the end of a real one.
const TIMED_STEPS = 48;
// Interleaved rounds of compare on a synthetic context (see compare).
const COMPARE_ROUNDS = 5;


// Every G at one context on `main`, the model's own G first, then the shipped uptrained
// checkpoints (`checkpoints`: [{g, dir, source}], each loaded into a session of its own for
// its row). The speed at `context`: mode 'synthetic' fills the KV cache with synthetic
// values and times decode steps (as the sweep does); mode 'real' generates from the prompt
// until the cache holds `context` positions and times the last tokens. Each row also has a
// short text (the same prompt, settings and seed for every G) and its quality against the
// unconverted model with an f32 KV cache, measured live on the tokens the first row
// generated. kvDtypes: a list of KV precisions to run all of the above with, in turn
// (null: the precision in use only).
export async function compare(main, { prompt, params, groups, method, seed, context, mode, checkpoints = [], kvDtypes = null }) {
  const restore = main.info().nKvHeads;
  const restoreKv = settings.kvDtype;
  let reference = null;
  // Each row's tok/s samples, in the order the rows were posted.
  const timed = [];
  // The KV precision of the rows to come (null: as the page set it): the main session's
  // engine is opened again with it, and the checkpoints' sessions are opened with it.
  const usePrecision = async (kv) => {
    if (kv === null) return;
    if (main.info().kvDtype !== kv) await main.setKvDtype(kv);
    settings.kvDtype = kv;
  };
  // Run `f` on an uptrained checkpoint's own session, opened for the call.
  const withCheckpoint = async (source, f) => {
    const checkpoint = openSession(source, main.info().capacity);
    try {
      await applyBackend(checkpoint, { report: false });
      return await f(checkpoint);
    } finally {
      checkpoint.free();
    }
  };
  const measure = (session) => measureAt(session, prompt, params, context, mode);
  const time = (session) => onGpuFailure(session, () => session.decodeSpeed(context, TIMED_STEPS));
  try {
    for (const kv of kvDtypes ?? [null]) {
      if (settings.stopRequested) break;
      await usePrecision(kv);
      for (const g of groups) {
        if (settings.stopRequested) break;
        main.setGroups(g, method, seed);
        const row = await measure(main);
        if (!row) break; // the GPU was lost
        reference ??= row.ids;
        const quality = reference.length >= 2 ? main.qualityVsBase(Uint32Array.from(reference)) : null;
        delete row.ids;
        timed.push({ g, kv, source: null, samples: [row.tokS] });
        post({ type: Reply.compareRow, g, checkpoint: null, quality, ...row });
      }
      for (const { g, dir, source } of checkpoints) {
        if (settings.stopRequested) break;
        const row = await withCheckpoint(source, measure);
        if (!row) break;
        delete row.ids;
        timed.push({ g, kv, source, samples: [row.tokS] });
        post({ type: Reply.compareRow, g, checkpoint: dir, quality: null, ...row });
      }
    }
    // On a synthetic context, further rounds time every row once more, in the same order,
    // so that a slow spell of a shared machine slows every G alike; each row then shows
    // its fastest round: such noise only ever slows a round down.
    for (let round = 1; mode !== 'real' && round < COMPARE_ROUNDS; round++) {
      for (const [index, t] of timed.entries()) {
        if (settings.stopRequested) return;
        await usePrecision(t.kv);
        if (t.source) t.samples.push(await withCheckpoint(t.source, time));
        else {
          main.setGroups(t.g, method, seed);
          t.samples.push(await time(main));
        }
        post({ type: Reply.compareSpeed, index, tokS: Math.max(...t.samples), rounds: t.samples.length });
      }
    }
  } finally {
    if (kvDtypes) {
      await main.setKvDtype(restoreKv ?? '');
      settings.kvDtype = restoreKv;
    }
    main.setGroups(restore, method, seed);
    post({ type: Reply.finished, what: 'compare', info: main.info() });
  }
}

// Decode tokens/s against context length for each G on `session`, on a synthetic KV cache.
export async function sweep(session, { groups, contexts, steps, method, seed }) {
  const restore = session.info().nKvHeads;
  try {
    for (const g of groups) {
      session.setGroups(g, method, seed);
      for (const ctx of contexts) {
        if (settings.stopRequested) return;
        if (ctx > session.info().capacity) continue;
        post({ type: Reply.sweepPoint, g, ctx, tokS: await onGpuFailure(session, () => session.decodeSpeed(ctx, steps)) });
        await tick();
      }
    }
  } finally {
    session.setGroups(restore, method, seed);
    post({ type: Reply.finished, what: 'sweep', info: session.info() });
  }
}

// `session`'s decode speed at `context` positions ('synthetic' or 'real', see compare),
// and a text from the prompt with `params`. Null when the GPU was lost.
async function measureAt(session, prompt, params, context, mode) {
  const info = session.info();
  let tokS, reached, text, ids;
  if (mode === 'real') {
    const promptTokens = session.promptIds(prompt).length;
    if (promptTokens + TIMED_STEPS > context) throw new Error(`the prompt takes ${promptTokens} positions: choose a context of at least ${promptTokens + TIMED_STEPS}`);
    const times = [];
    const run = await generate(session, prompt, { ...params, maxTokens: context - promptTokens }, () => times.push(performance.now()));
    if (!run.stats) return null;
    const k = Math.min(TIMED_STEPS, times.length - 1);
    tokS = k > 0 ? (1000 * k) / (times.at(-1) - times.at(-1 - k)) : 0;
    reached = promptTokens + times.length;
    ({ text, ids } = run);
  } else {
    tokS = await onGpuFailure(session, () => session.decodeSpeed(context, TIMED_STEPS));
    reached = context;
    const run = await generate(session, prompt, params, () => {});
    if (!run.stats) return null;
    ({ text, ids } = run);
  }
  const kvBytes = info.kvBytesPerPosition * reached;
  return {
    tokS, context: reached, requested: context, mode, backend: info.backend, kvDtype: info.kvDtype, text: text.slice(0, 200), ids,
    kvBytes, bytesPerToken: info.weightBytes + kvBytes, nHeads: info.nHeads,
  };
}
