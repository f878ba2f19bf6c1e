// Small canvas charts: lines (x, y series) and a labelled scatter. No dependencies.
const COLORS = ['#2a7ab8', '#d9534f', '#5cb85c', '#f0ad4e', '#8e44ad', '#16a085', '#7f8c8d', '#c0392b'];

export const color = (i) => COLORS[i % COLORS.length];

// series: [{label, points: [[x, y], ...], color?, hollow?}]; options: {xLabel, yLabel, scatter,
// yFromZero (default true; false fits the y axis to the data)}
export function plot(canvas, series, { xLabel = '', yLabel = '', scatter = false, yFromZero = true } = {}) {
  const ctx = canvas.getContext('2d');
  const { width: w, height: h } = canvas;
  const pad = { l: 52, r: scatter ? 70 : 10, t: 10, b: 34 };
  ctx.clearRect(0, 0, w, h);
  const all = series.flatMap((s) => s.points);
  if (all.length === 0) return;
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]);
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  if (x0 === x1) [x0, x1] = [x0 - 1, x1 + 1];
  let [y0, y1] = yFromZero ? [Math.min(0, ...ys), Math.max(...ys) * 1.1 || 1] : [Math.min(...ys), Math.max(...ys)];
  if (!yFromZero) {
    const margin = (y1 - y0) * 0.15 || 0.1;
    [y0, y1] = [y0 - margin, y1 + margin];
  }
  const px = (x) => pad.l + ((x - x0) / (x1 - x0)) * (w - pad.l - pad.r);
  const py = (y) => h - pad.b - ((y - y0) / (y1 - y0)) * (h - pad.t - pad.b);

  ctx.strokeStyle = '#999';
  ctx.fillStyle = '#444';
  ctx.font = '11px system-ui';
  ctx.beginPath();
  ctx.moveTo(pad.l, pad.t);
  ctx.lineTo(pad.l, h - pad.b);
  ctx.lineTo(w - pad.r, h - pad.b);
  ctx.stroke();
  for (let i = 0; i <= 4; i++) {
    const y = y0 + ((y1 - y0) * i) / 4;
    ctx.fillText(fmt(y), 4, py(y) + 4);
    const x = x0 + ((x1 - x0) * i) / 4;
    ctx.fillText(fmt(x), px(x) - 10, h - pad.b + 14);
  }
  ctx.fillText(xLabel, w / 2 - 30, h - 4);
  ctx.save();
  ctx.translate(12, h / 2 + 20);
  ctx.rotate(-Math.PI / 2);
  ctx.restore();
  ctx.fillText(yLabel, pad.l + 6, pad.t + 10);

  series.forEach((s, i) => {
    ctx.strokeStyle = ctx.fillStyle = s.color ?? color(i);
    if (!scatter) {
      ctx.beginPath();
      s.points.forEach(([x, y], j) => (j ? ctx.lineTo(px(x), py(y)) : ctx.moveTo(px(x), py(y))));
      ctx.stroke();
    }
    for (const [x, y] of s.points) {
      ctx.beginPath();
      ctx.arc(px(x), py(y), scatter ? 5 : 2, 0, 2 * Math.PI);
      if (s.hollow) {
        ctx.lineWidth = 2;
        ctx.stroke();
        ctx.lineWidth = 1;
      } else {
        ctx.fill();
      }
      if (scatter) ctx.fillText(s.label, px(x) + 6, py(y) - 4);
    }
    if (!scatter) ctx.fillText(s.label, w - pad.r - 90, pad.t + 12 + 13 * i);
  });
}

function fmt(v) {
  const a = Math.abs(v);
  if (a >= 1000) return `${(v / 1000).toFixed(a >= 10000 ? 0 : 1)}k`;
  return a >= 10 || a === 0 ? v.toFixed(0) : v.toFixed(a >= 1 ? 2 : 3);
}
