// Decode tok/s of the page's CPU engine in headless Chromium: the single-thread module
// (?threads=1) against the threaded one with N threads, on the same model and context,
// in interleaved rounds (so that a slow spell of a shared machine slows both alike),
// each figure the median of its rounds. Each round is the wasm decodeSpeed: the KV
// cache filled with synthetic values to the context, then timed single-token steps.
//
//   node scripts/bench-threads.mjs [threads=2] [rounds=5] [steps=24]
//
// Needs www/pkg and www/pkg-threads (scripts/build-web.sh). Cases: the 110m preset
// (random weights, f32) at contexts 128 and 2048, and the shipped base (www/models/mha,
// f16) at 2048, each at G = H (MHA) and G = 1 (MQA).
import { openLab } from './browser-engine.mjs';
import { median } from './support.mjs';

const [threads = '2', rounds = '5', steps = '24'] = process.argv.slice(2);
const n = Number(threads);

const lab = await openLab();
const single = await lab.engine({ threads: 1 });
const threaded = await lab.engine({ threads: n });
console.log(`headless Chromium, CPU engine (simd128): single-thread module vs threaded module with ${threaded.threads} threads; ` +
  `median of ${rounds} interleaved rounds of ${steps} steps`);
console.log('model\tG\tcontext\t1 thread tok/s\t' + `${n} threads tok/s\tspeed-up`);
const models = [
  ['110m preset', (e) => e.call('preset', '110m', 1, false, 2048), [128, 2048]],
  ['shipped base', (e) => e.call('fetchHf', '/models/mha', 2048), [2048]],
];
for (const [name, load, contexts] of models) {
  const info = (await Promise.all([load(single), load(threaded)]))[0];
  for (const g of [info.nHeads, 1]) {
    await Promise.all([single.call('setGroups', g, 'mean', 0), threaded.call('setGroups', g, 'mean', 0)]);
    for (const ctx of contexts) {
      const one = [];
      const many = [];
      for (let r = 0; r < Number(rounds); r++) {
        one.push(await single.call('decodeSpeed', ctx, Number(steps)));
        many.push(await threaded.call('decodeSpeed', ctx, Number(steps)));
      }
      const [a, b] = [median(one), median(many)];
      console.log(`${name}\t${g}\t${ctx}\t${a.toFixed(1)}\t${b.toFixed(1)}\t${(b / a).toFixed(2)}x`);
    }
  }
}
await lab.close();
