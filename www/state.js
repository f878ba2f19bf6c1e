// state.js: the page's state, one object; its phase changes only through `to`, along NEXT.
//
//   starting ─► empty ─► loading ─► ready ─► converting | generating | comparing | sweeping | switching ─► ready
//                          │          └─► loading (another model, or the shipped base ⇄ an uptrained checkpoint)
//                          └─► converting (the shipped base, reloaded to be converted to a G)
//   any phase ─► restarting (the worker crashed) ─► empty
//
// A request that fails goes back to ready, or to empty when no model is loaded.

// The phases each phase may go to ('restarting' may be entered from any phase).
const NEXT = {
  starting: ['empty'], // the worker is starting; once up, the first model is loaded
  restarting: ['empty'], // the worker is starting again after a crash; nothing is loaded
  empty: ['loading'], // the worker is up, no model is loaded
  loading: ['ready', 'converting', 'empty'], // fetching, reading or loading a model
  ready: ['loading', 'converting', 'generating', 'comparing', 'sweeping', 'switching'],
  converting: ['ready'], // the worker converts the model to another G
  generating: ['ready'],
  comparing: ['ready'],
  sweeping: ['ready'],
  switching: ['ready'], // the backend or the KV cache's precision changes
};
const IDLE = ['starting', 'restarting', 'empty', 'ready'];

export const state = {
  // {name, ...what that phase needs}: 'loading' has {model, convertTo}, the G to convert to once
  // loaded; 'converting' has {probe}: whether the quality on the probe (quality.js) follows.
  phase: { name: 'starting' },
  worker: null, // the inference Worker
  webgpu: null, // the worker's WebGPU status
  simd: null, // the CPU engine's SIMD
  threads: 1, // the CPU engine's threads, and why that many (which wasm build the worker loaded)
  threadsWhy: '',
  onGpu: false, // whether the model runs on WebGPU, and why (or why not)
  backendReason: null,
  shipped: null, // the shipped family: {base, uptrained: {G: dir}, variants}
  loaded: null, // the loaded model: {kind: 'real' | 'shipped' | 'preset' | 'file' | 'link', dir?, name?, url?, chat?, capacityWhy}
  info: null, // the worker's Session.info() for the loaded model
  familyChoices: null, // the shipped base's G choices, offered while an uptrained checkpoint is loaded
  contextUsed: 0,
  run: null, // the generation in progress: {times, points, streamed}
  tokens: 0, // token messages received (tests check that text streams)
  lastStats: null, // the last generation's statistics
  compare: [], // compare-all-G rows: {g, kvDtype, tokS, quality, ...}
  comparingPrecisions: false, // whether the last compare ran every KV precision
  attention: null, // the attention probe's record of one layer (Session.attention), drawn by attention.js
  sweep: {}, // the sweep's points, [context, tok/s], by G

  // Whether the worker (or a fetch for it) is working: every phase but the idle ones.
  get busy() {
    return !IDLE.includes(this.phase.name);
  },
  get onShipped() {
    return this.loaded?.kind === 'shipped';
  },
  get onShippedBase() {
    return this.onShipped && this.loaded.dir === this.shipped.base;
  },
  // The G choices, largest first: the loaded model's, or the shipped base's while an
  // uptrained checkpoint (with fewer heads) is loaded.
  get groupChoices() {
    const family = this.onShipped && !this.onShippedBase && this.familyChoices;
    return [...(family || this.info.groupChoices)].reverse();
  },
  // The G choices that compare and sweep run: up to the loaded model's own, and MHA (its
  // heads repeated) for a model trained with fewer key/value heads than query heads.
  get groupsToCompare() {
    const { baseKvHeads: base, nHeads: h } = this.info;
    return this.groupChoices.filter((g) => g <= base || (g === h && !this.onShipped));
  },
};

const watchers = [];
// Call fn after every change of phase.
export const watch = (fn) => watchers.push(fn);

export const can = (name) => name === 'restarting' || NEXT[state.phase.name].includes(name);

// Enter phase `name` with its data; a change the diagram does not allow is a bug.
export function to(name, data = {}) {
  if (!can(name)) throw new Error(`the page cannot go from ${state.phase.name} to ${name}`);
  state.phase = { name, ...data };
  for (const fn of watchers) fn(state);
}

// A request ended in an error: back to ready, or to empty when no model is loaded.
export function settle() {
  if (state.busy) to(state.info ? 'ready' : 'empty');
}

// The worker's description of the loaded model (after a load, a conversion, a backend change).
export function setInfo(info) {
  state.info = info;
  if (state.onShippedBase) state.familyChoices = info.groupChoices;
}
