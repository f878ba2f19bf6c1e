// The page's first token, as tests/web/e2e.mjs measures it at its start, without the rest of
// the test: headless Chromium opens the demo server's page (a fresh browser context each
// time, so nothing is cached), waits for the default model to load, presses the chat's Send
// (or Generate) and waits for the first token; then stops the reply. Given several copies of
// the page (e.g. one with an older build in its pkg folders), it alternates between them
// round by round, so that a slow spell of the machine slows each alike.
//
//   node scripts/first-token.mjs [rounds=3] [www ...]      (default: www)
//
// Prints one line per round and page, then the medians: page open to model loaded, to the
// first token, when the model file's fetch started and ended, the worker's own load time
// (the session from the file, and its engine) and the prefill time, all in ms.
import { serve } from './serve.mjs';
import { launchChromium, median } from './support.mjs';

const [rounds = '3', ...roots] = process.argv.slice(2);
if (!/^[1-9][0-9]*$/.test(rounds)) {
  console.error('usage: node scripts/first-token.mjs [rounds=3] [www ...]');
  process.exit(2);
}
const pages = await Promise.all((roots.length ? roots : ['www']).map(async (root) => {
  const server = await serve({ root, port: 0 });
  return { root, server, url: `http://127.0.0.1:${server.address().port}/`, runs: [] };
}));
const browser = await launchChromium({ webgpu: true });

// One page load on `url`: {loaded, first, fetchStart, fetchEnd, worker, prefill} in ms.
async function measure(url) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const idle = () => page.waitForFunction(() => window.gqaState && !window.gqaState.busy && window.gqaState.info, null, { timeout: 120_000 });
  const t0 = Date.now();
  await page.goto(url);
  await idle();
  const loaded = Date.now() - t0;
  // The model file's fetch, from the page's resource timing (ms since the page opened).
  const file = await page.evaluate(() => {
    const e = performance.getEntriesByType('resource').filter((r) => r.name.includes('/models/') && r.transferSize > 1e6).at(-1);
    return e ? [Math.round(e.startTime), Math.round(e.responseEnd)] : [NaN, NaN];
  });
  const worker = Number((await page.textContent('#notice')).match(/Loaded in ([0-9]+) ms/)?.[1] ?? NaN);
  await page.click((await page.isVisible('#chat')) ? '#chat-send' : '#generate');
  await page.waitForFunction(() => window.gqaState.tokens > 0, null, { timeout: 60_000 });
  const first = Date.now() - t0;
  await page.click((await page.isVisible('#chat')) ? '#chat-stop' : '#stop').catch(() => {});
  await idle();
  const stats = await page.evaluate(() => window.gqaState.lastStats);
  const backend = await page.evaluate(() => window.gqaState.info.backend);
  await context.close();
  return { loaded, first, fetchStart: file[0], fetchEnd: file[1], worker, prefill: Math.round(stats?.prefill_ms ?? NaN), tokens: stats?.prompt_tokens, backend };
}

try {
  for (let r = 0; r < Number(rounds); r++) {
    for (const p of pages) {
      const m = await measure(p.url);
      p.runs.push(m);
      console.log(`${p.root}\tround ${r + 1}: loaded ${m.loaded}, first token ${m.first} (model file fetched ${m.fetchStart}-${m.fetchEnd}, worker load ${m.worker}, prefill ${m.prefill} of ${m.tokens} tokens; ${m.backend})`);
    }
  }
  for (const p of pages) {
    const med = (k) => median(p.runs.map((m) => m[k]));
    console.log(`${p.root}\tmedian: loaded ${med('loaded')}, first token ${med('first')} (worker load ${med('worker')}, prefill ${med('prefill')})`);
  }
} finally {
  await browser.close();
  for (const p of pages) p.server.close();
}
