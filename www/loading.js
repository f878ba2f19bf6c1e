// loading.js: loading a model: from the picker (a real model, the shipped family, a preset),
// a link (links.js) or the user's files; the source is fetched or read here, then sent to
// the worker, which builds the session (app.js handles its reply).
import { state, to, can, settle } from './state.js';
import { send } from './worker-client.js';
import { Request } from './messages.js';
import * as sources from './sources.js';
import { fmtBytes } from './readouts.js';
import { fail, clearError, progress } from './notices.js';
import { isLink } from './downloads.js';
import { fetchLinked } from './links.js';
import { seed } from './params.js';
import { settingsFromUrl } from './exports.js';

const $ = (id) => document.getElementById(id);

// KV-cache capacity the page asks for: the whole context, up to this many positions (the
// engine then fits it to this tab's memory). A GGUF model names its own (sources.GGUF_KV).
const MAX_CAPACITY = 4096;

// Load `model` ({kind, dir?, name?, url?, capacity?, kvDtype?}): enter 'loading', get its
// source (fetching or reading files), send it. convertTo: a G to convert to once loaded.
// The KV cache: the model's own capacity and precision where it names them (a GGUF model;
// the KV control, when set, still decides the precision), else up to MAX_CAPACITY positions
// in the precision set on the page. model.capacityWhy says which, on the page.
async function load(model, getSource, convertTo = null) {
  const capacity = model.capacity ?? MAX_CAPACITY;
  const kvDtype = $('kv-dtype').value || model.kvDtype || undefined;
  model.capacityWhy = !model.capacity ? `the page asks for the model's context, up to ${MAX_CAPACITY} positions`
    : `the page opens a GGUF model with its whole context up to ${model.capacity} positions, in ${model.kvDtype} unless the KV cache control says otherwise`;
  to('loading', { model, convertTo });
  try {
    const { source, label, transfer = [] } = await getSource();
    progress(undefined, label);
    send(Request.load, { backend: $('backend').value, capacity, kvDtype, source }, transfer);
  } catch (e) {
    settle();
    progress(null);
    // A link that fails while nothing is loaded (the page opened with ?model=URL): the
    // default model instead, the error kept.
    const fallback = !state.info && model.kind === 'link' && [...$('model-select').options].find((o) => !isLink(o.value));
    fail(fallback ? `${e.message}; the default model is loaded instead` : e.message);
    if (fallback) {
      $('model-select').value = fallback.value;
      loadSelected(null, { keepError: true });
    }
  }
}

export function loadShipped(dir, convertTo) {
  const onBytes = (r, t) => progress(t ? r / t : undefined, `fetching model.safetensors: ${fmtBytes(r)}${t ? ` of ${fmtBytes(t)}` : ''}`);
  return load({ kind: 'shipped', dir }, async () => {
    progress(0, `fetching models/${dir}/model.safetensors`);
    return { source: await sources.shippedSource(dir, onBytes), label: 'loading the model…' };
  }, convertTo);
}

// The progress of fetching a real model's file.
const fetchProgress = (real) => (r, t) => progress(t ? r / t : undefined, `fetching ${real.path.split('/').pop()}: ${fmtBytes(r)}${t ? ` of ${fmtBytes(t)}` : ''}`);

// A real model's GGUF file (sources.REAL_MODELS), fetched with progress.
function loadReal(real, convertTo) {
  const { name, capacity, kvDtype } = real;
  return load({ kind: 'real', name, capacity, kvDtype }, async () => {
    progress(0, `fetching ${real.path}`);
    const source = await sources.ggufSource(real, fetchProgress(real));
    return { source, transfer: [source.weights], label: `loading ${real.label}…` };
  }, convertTo);
}

// A GGUF file by link (links.js): the copy kept in this browser, else downloaded with
// progress, checked and kept; opened as the real models are.
export function loadLink(url, convertTo = null) {
  clearError();
  if (!can('loading')) return fail(loadRefused());
  const model = { kind: 'link', url, ...sources.GGUF_KV };
  return load(model, async () => {
    const { buffer, note } = await fetchLinked(url);
    Object.assign(model, { note, bytes: buffer.byteLength });
    return { source: { kind: 'gguf', weights: buffer }, transfer: [buffer], label: `loading ${url}…` };
  }, convertTo);
}

// Why no model can be loaded now.
const loadRefused = () => (state.busy ? 'the model is busy; press Stop first' : 'the engine is still starting');

// Load the model chosen in the picker; convertTo: a G to convert to once loaded.
export function loadSelected(convertTo = null, { keepError = false } = {}) {
  if (!keepError) clearError();
  const value = $('model-select').value;
  if (isLink(value)) return loadLink(value, convertTo);
  const [kind, name] = value.split(/:(.*)/s);
  if (kind === 'real') return loadReal(sources.realModel(name), convertTo);
  if (kind === 'shipped') {
    $('uptrained').checked = false;
    return loadShipped(name, convertTo);
  }
  const preset = sources.PRESETS.find((p) => p.name === name);
  return load({ kind: 'preset', name }, () => ({ source: sources.presetSource(preset, seed()), label: `generating ${preset.label} from seed ${seed()}…` }), convertTo);
}

export function loadFiles(fileList) {
  clearError();
  if (!can('loading')) return fail(loadRefused());
  const files = [...fileList];
  return load({ kind: 'file', ...(sources.ggufFile(files) ? sources.GGUF_KV : {}) }, async () => {
    const source = await sources.filesSource(files);
    const transfer = [source.weights, source.tokenizer].filter(Boolean);
    return { source, transfer, label: `loading ${files.map((f) => f.name).join(', ')}…` };
  });
}

// Start fetching the file of the model the page opens on (the link's, else the picker's
// first) when it is a real model: its 98 MB then arrive while the worker is still compiling
// the wasm module and starting its threads, rather than after.
export function prefetchOpening() {
  const link = settingsFromUrl().model;
  const offered = [...$('model-select').options].some((o) => o.value === link);
  const [kind, name] = (offered ? link : $('model-select').value).split(/:(.*)/s);
  const real = kind === 'real' ? sources.realModel(name) : null;
  if (real) sources.prefetchGguf(real, fetchProgress(real));
}
