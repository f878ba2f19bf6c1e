// The threaded wasm module (www/pkg-threads) in headless Chromium: its logits equal the
// native engine's within 1e-5, as the single-thread module's do, on the random model of
// tests/web_reference.rs and on the `15m` preset, with every matrix and attention step
// split across the pool's threads (threshold 0; the page's default splits only work of
// 2 MiB or more, which the 15m preset's classifier and gate/up reach); it runs the threads it
// was given; a seeded generation streams the same text on both modules; and a page
// that is not cross-origin isolated cannot start it. Run by tests/run.sh after
// tests/web_reference.rs and scripts/build-web.sh:
//
//   node tests/web/threads.mjs
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openLab } from '../../scripts/browser-engine.mjs';
import { check, finish, skip } from './checks.mjs';

const root = fileURLToPath(new URL('../../', import.meta.url));
const reference = join(root, 'target/web-reference/');
const SMOLLM2 = 'models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf';
const TOLERANCE = 1e-5;

const maxDiff = (a, b) => (a.length !== b.length ? Infinity : a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0));

async function sameLogits(engine, cases, expected, what) {
  for (const [i, tokens] of cases.entries()) {
    const got = await engine.call('logits', tokens);
    const diff = maxDiff(got, expected[i]);
    check(diff <= TOLERANCE, `${what}, case ${i} (${tokens.length} tokens): max |wasm - native| = ${diff.toExponential(2)}`);
  }
}

const lab = await openLab();
try {
  const ref = JSON.parse(readFileSync(`${reference}reference.json`, 'utf8'));
  const config = readFileSync(`${reference}config.json`, 'utf8');
  const weights = readFileSync(`${reference}model.safetensors`).toString('base64');
  check(lab.isolated, 'the demo server makes the page cross-origin isolated');
  const threaded = await lab.engine({ threads: 2 });
  const single = await lab.engine({ threads: 1 });
  check(threaded.threads === 2, `the threaded module runs 2 threads (threads() = ${threaded.threads})`);
  check(single.threads === 1, `the single-thread module runs 1 (threads() = ${single.threads})`);
  // The threaded build also uses relaxed SIMD's fused multiply-add; the single-thread one,
  // for browsers without it, plain simd128 (so the logits below test both arithmetics).
  const [threadedSimd, singleSimd] = [await threaded.call('simdName'), await single.call('simdName')];
  check(threadedSimd.includes('relaxed-simd'), `the threaded module multiplies-adds with relaxed SIMD ("${threadedSimd}")`);
  check(singleSimd === 'wasm simd128', `the single-thread module uses plain simd128 ("${singleSimd}")`);
  for (const [name, engine] of [['threaded', threaded], ['single-thread', single]]) {
    await engine.call('hf', config, weights, 64);
    await sameLogits(engine, ref.cases, ref.random, `${name}, random model`);
    const p = ref.preset_15m;
    await engine.call('preset', '15m', p.seed, false, 512);
    await sameLogits(engine, p.cases, p.logits, `${name}, 15m preset`);
    if (engine === threaded) {
      await engine.call('setMinParallelBytes', 0);
      await sameLogits(engine, p.cases, p.logits, `${name}, 15m preset, every operation split (threshold 0)`);
    }
  }
  // SmolLM2's GGUF (Q4_1 and Q8_0 blocks), put in www/models/ by scripts/fetch-model.sh
  // (tests/run.sh runs it): the native logits within 1e-4 of the largest |logit|, the bar of
  // the f64 reference test (tests/smollm2.rs), as 30 layers carry the roundings.
  if (ref.smollm2 && existsSync(join(root, 'www', SMOLLM2))) {
    for (const [name, engine] of [['threaded', threaded], ['single-thread', single]]) {
      await engine.call('fetchGguf', `/${SMOLLM2}`, 64);
      for (const [i, tokens] of ref.smollm2.cases.entries()) {
        const want = ref.smollm2.logits[i];
        const scale = want.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
        const diff = maxDiff(await engine.call('logits', tokens), want);
        check(diff <= 1e-4 * scale, `${name}, SmolLM2 (GGUF, Q4_1), case ${i} (${tokens.length} tokens): max |wasm - native| = ${diff.toExponential(2)}, largest |logit| ${scale.toFixed(1)}`);
      }
    }
    await single.call('preset', '15m', ref.preset_15m.seed, false, 512);
    await threaded.call('preset', '15m', ref.preset_15m.seed, false, 512);
  } else {
    skip('SmolLM2 on the wasm modules', `www/${SMOLLM2} (bash scripts/fetch-model.sh smollm2) and ../shared for its reference logits`);
  }
  // Sampling: the same seed gives the same ids on both (the model is the 15m preset).
  const params = { maxTokens: 24, temperature: 0.9, topP: 0.95, seed: 11 };
  const ids = [];
  for (const engine of [threaded, single]) ids.push(await engine.call('generateIds', '', params));
  check(ids[0].length === 24 && JSON.stringify(ids[0]) === JSON.stringify(ids[1]),
    `a seeded generation samples the same ${ids[0].length} ids on both modules`);
} catch (e) {
  check(false, `aborted: ${e.stack ?? e}`);
} finally {
  await lab.close();
}

// Without COOP/COEP there is no shared memory: the threaded module cannot start, which is
// why the page then loads the single-thread one (tests/web/e2e.mjs checks the page).
const plain = await openLab({ isolate: false });
try {
  check(!plain.isolated, 'without COOP/COEP headers the page is not cross-origin isolated');
  const refused = await plain.engine({ threads: 2 }).then(() => 'started', (e) => e.message);
  check(refused !== 'started', `the threaded module does not start there: "${refused.slice(0, 120)}"`);
} finally {
  await plain.close();
}

finish('threads');
