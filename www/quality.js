// quality.js: the live quality readout beside the G control: how far the converted model's
// next-token predictions are from the model's own G, on one fixed text (the probe), measured
// by the worker after each change of G (messages.js 'setGroups', 'quality').
import { state } from './state.js';

const $ = (id) => document.getElementById(id);

// The probe: fixed, so that every G is scored on the same tokens. A chat model reads a
// short exchange in its template; a plain model a story opening (the shipped family's style).
const CHAT_PROBE = [
  { role: 'user', content: 'What is the capital of France, and what is it known for?' },
  { role: 'assistant', content: 'The capital of France is Paris. It is known for the Eiffel Tower, the Louvre museum, ' +
    'its cafes and the river Seine, and it has been the centre of French art and politics for centuries.' },
];
const TEXT_PROBE = 'Once upon a time, there was a little girl named Lily. She loved to play in the park with her dog, Max. ' +
  'One day, Lily saw a big red ball under a tree. She ran to get it, but the ball rolled away into the pond.';

// The probe for the loaded model, or null where there is nothing to read it with (no tokenizer).
export function probe() {
  if (!state.info?.hasTokenizer) return null;
  return state.info.chat ? CHAT_PROBE : TEXT_PROBE;
}

// Before a conversion to G: what the readout will say, or that it is being measured.
export function expectQuality(g) {
  const { baseKvHeads: base } = state.info;
  $('g-quality').textContent = g === base
    ? `G = ${base} is the model as trained: the reference the other G are measured against.`
    : probe() ? `measuring G = ${g} against G = ${base} on a fixed text…` : '';
}

// The worker's measurement ('quality' reply).
export function showQuality({ g, method, tokens, klVsBase, top1Agreement }) {
  const { baseKvHeads: base, nHeads: h } = state.info;
  const how = g > base ? `each of the ${base} key/value heads repeated ${g / base}x` : `${method} of each group`;
  $('g-quality').dataset.kl = klVsBase;
  $('g-quality').textContent = `Against the model's own G = ${base}, on a fixed ${state.info.chat ? 'chat' : 'text'} of ${tokens + 1} tokens: ` +
    `KL ${klVsBase.toFixed(4)} nats/token, top-1 agreement ${(100 * top1Agreement).toFixed(1)}% (G = ${g} of H = ${h}, ${how}).` +
    (g > base ? ' The same model: only its cache grew.' : klVsBase > 0.05 ? ' Not uptrained: the answers change.' : '');
}
