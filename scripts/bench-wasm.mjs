// Decode tokens/s of the wasm CPU SIMD engine under Node (one thread), for comparison
// with the native engine on one thread:
//
//   node scripts/bench-wasm.mjs [preset=15m | a Hugging Face folder] [contexts=128,512] [steps=16] [rounds=3]
//   RAYON_NUM_THREADS=1 gqa bench --preset 15m --contexts 128,512 --steps 16 --rounds 3
//
// Needs www/pkg (scripts/build-web.sh). Prints one line per G and context (median of rounds).
import { existsSync, readFileSync } from 'node:fs';
import init, * as gqa from '../www/pkg/gqa.js';
import { median } from './support.mjs';

const [preset = '15m', contexts = '128,512', steps = '16', rounds = '3'] = process.argv.slice(2);
await init({ module_or_path: readFileSync(new URL('../www/pkg/gqa_bg.wasm', import.meta.url)) });
// A folder with config.json (e.g. www/models/mha) loads as the page loads it; else a preset.
const folder = existsSync(`${preset}/config.json`);
const session = folder
  ? gqa.Session.fromHf(readFileSync(`${preset}/config.json`, 'utf8'), readFileSync(`${preset}/model.safetensors`), undefined, undefined, undefined)
  : gqa.Session.fromPreset(preset, 1, false, undefined);
const info = session.info();
console.log(`wasm ${gqa.simdName()}, ${folder ? 'model' : 'preset'} ${preset}: ${(info.params / 1e6).toFixed(1)}M params, H = ${info.nHeads}`);
for (const g of [...info.groupChoices].reverse()) {
  session.setGroups(g, 'mean', 0);
  for (const ctx of contexts.split(',').map(Number)) {
    const runs = [];
    for (let r = 0; r < Number(rounds); r++) runs.push(await session.decodeSpeed(ctx, Number(steps)));
    console.log(`G = ${g}\tcontext ${ctx}\t${median(runs).toFixed(1)} tok/s`);
  }
}
