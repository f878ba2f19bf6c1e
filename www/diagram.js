// diagram.js: the head-group diagram. The loaded model's H query heads (circles, top) wired to
// its G key/value heads (squares, bottom): query head h reads key/value head h / (H/G), the
// grouping the engine uses, each group in one colour. Below it, how this G's key/value heads
// were made.
import { state } from './state.js';

const $ = (id) => document.getElementById(id);
const SVG = 'http://www.w3.org/2000/svg';

// The colour of key/value head k of G.
export const groupColor = (k, g) => `hsl(${Math.round((360 * k) / g + 210) % 360} 65% 45%)`;

function el(name, attrs, parent) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  parent.append(e);
  return e;
}

// How the running key/value heads came to be, in words.
function provenance(info, method) {
  const { nHeads: h, nKvHeads: g, baseKvHeads: base } = info;
  if (g === base) {
    if (state.onShipped && !state.onShippedBase) {
      return `An uptrained checkpoint: ${g} key/value heads mean-pooled from the MHA base, then trained further ` +
        'for 5% of the pretraining steps (the paper\'s Algorithm 5).';
    }
    return g === h ? 'MHA: every query head has its own key/value head, as the model was trained.'
      : `The model's own ${g} key/value heads, as it was trained.`;
  }
  if (g > base) {
    return `The model's own ${base} key/value heads, each repeated ${g / base} times: the same model, its outputs unchanged, ` +
      `with the ${g} key/value heads (and the cache) that MHA would need. Repeated heads share a colour.`;
  }
  const k = base / g;
  if (method === 'first') return `Converted on the fly: each key/value head is the first of the ${k} heads of its group (an ablation), not trained since.`;
  if (method === 'random') return `Converted on the fly: each key/value head is random (the ablation's lower bound), not trained since.`;
  return `Converted on the fly: each key/value head is the mean of the ${k} heads of its group (the paper's Algorithm 4), not trained since.`;
}

// Draw the diagram for state.info and the conversion method chosen.
export function drawHeads(method) {
  const info = state.info;
  const svg = $('head-diagram');
  svg.replaceChildren();
  if (!info) return;
  const { nHeads: h, nKvHeads: g, baseKvHeads: base } = info;
  // Above the native G, the key/value heads are copies: each takes its original's colour.
  const colour = (k) => (g > base ? groupColor(Math.floor((k * base) / g), base) : groupColor(k, g));
  const [w, top, bottom] = [380, 22, 92];
  const size = h;
  const group = h / g;
  svg.dataset.h = h;
  svg.dataset.g = g;
  const x = (i, n) => 14 + ((w - 28) * (i + 0.5)) / n;
  const r = Math.max(2.5, Math.min(8, (w - 28) / size / 3));
  for (let q = 0; q < h; q++) {
    const k = Math.floor(q / group);
    el('line', { x1: x(q, h), y1: top, x2: x(k, g), y2: bottom, stroke: colour(k), 'stroke-width': 1.2, opacity: 0.7 }, svg);
  }
  for (let q = 0; q < h; q++) {
    const k = Math.floor(q / group);
    const c = el('circle', { cx: x(q, h), cy: top, r, fill: colour(k), class: 'q-node', 'data-head': q, 'data-kv': k }, svg);
    el('title', {}, c).textContent = `query head ${q}: reads key/value head ${k}`;
  }
  for (let k = 0; k < g; k++) {
    const s = Math.max(6, Math.min(16, (w - 28) / g / 2));
    const n = el('rect', { x: x(k, g) - s / 2, y: bottom - s / 2, width: s, height: s, fill: colour(k), class: 'kv-node', 'data-kv': k }, svg);
    el('title', {}, n).textContent = `key/value head ${k}: shared by query heads ${k * group}-${(k + 1) * group - 1}`;
  }
  el('text', { x: 2, y: 10, class: 'diagram-label' }, svg).textContent = `${h} query heads`;
  el('text', { x: 2, y: 116, class: 'diagram-label' }, svg).textContent =
    `${g} key/value head${g > 1 ? 's' : ''}${g === h ? ' (MHA)' : g === 1 ? ' (MQA)' : ''}: ${group} query head${group > 1 ? 's' : ''} each`;
  $('head-provenance').textContent = provenance(info, method);
}
