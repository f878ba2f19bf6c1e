// attention.js: attention as it happens. For the last token the engine ran (the attention
// probe's record of one layer), every query head's weights over the last up to 256 positions:
// one row per query head, rows grouped by the key/value head they share and marked in the
// head-group diagram's colours, each cell as dark as its weight (relative to its row's largest).
// Hovering (or tapping) a cell names its position's token and the weight.
import { state } from './state.js';
import { groupColor } from './diagram.js';

const $ = (id) => document.getElementById(id);
const WINDOW = 256;
const [LEFT, ROW] = [70, 14];

// The window shown: the last up to WINDOW positions of state.attention.
function shown() {
  const a = state.attention;
  const first = Math.max(0, a.nCtx - WINDOW);
  return { a, first, cols: a.nCtx - first };
}

export function drawAttention() {
  const canvas = $('attention-chart');
  const ctx = canvas.getContext('2d');
  if (!state.attention) {
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    return;
  }
  const { a, first, cols } = shown();
  const group = a.nHeads / a.nKvHeads;
  canvas.height = 22 + a.nHeads * ROW;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const cell = (canvas.width - LEFT) / cols;
  ctx.font = '11px system-ui';
  for (let h = 0; h < a.nHeads; h++) {
    const row = a.weights.slice(h * a.nCtx, (h + 1) * a.nCtx);
    const top = Math.max(...row) || 1;
    const kv = Math.floor(h / group);
    ctx.fillStyle = groupColor(kv, a.nKvHeads);
    ctx.fillRect(0, 18 + h * ROW, 6, ROW - 1);
    ctx.fillStyle = '#333';
    ctx.fillText(`q${h} → kv${kv}`, 9, 18 + h * ROW + 11);
    for (let j = 0; j < cols; j++) {
      const w = row[first + j] / top;
      ctx.fillStyle = `rgba(20, 60, 140, ${w.toFixed(3)})`;
      ctx.fillRect(LEFT + j * cell, 18 + h * ROW, Math.max(cell - 0.3, 0.7), ROW - 1);
    }
  }
  ctx.fillStyle = '#555';
  ctx.fillText(`layer ${a.layer}: positions ${first}-${a.nCtx - 1} (the last is the token itself); rows: query heads, grouped by key/value head`, LEFT, 12);
}

// The cell under the pointer, in words.
export function describeCell(event) {
  if (!state.attention) return;
  const canvas = $('attention-chart');
  const box = canvas.getBoundingClientRect();
  const x = ((event.clientX - box.left) * canvas.width) / box.width;
  const y = ((event.clientY - box.top) * canvas.height) / box.height;
  const { a, first, cols } = shown();
  const h = Math.floor((y - 18) / ROW);
  const j = Math.floor(((x - LEFT) * cols) / (canvas.width - LEFT));
  if (h < 0 || h >= a.nHeads || j < 0 || j >= cols) return;
  const pos = first + j;
  const token = (a.tokens[pos] ?? '?').replace(/^[Ġ▁]/, ' ');
  const kv = Math.floor(h / (a.nHeads / a.nKvHeads));
  $('attention-info').textContent =
    `query head ${h} (reads key/value head ${kv}) → position ${pos}, token ${JSON.stringify(token)}: weight ${a.weights[h * a.nCtx + pos].toFixed(4)}`;
}
