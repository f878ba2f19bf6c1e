// The browser tests' tally, shared by threads.mjs, server.mjs and e2e.mjs: check() prints
// each requirement as ok or FAIL, skip() one that cannot run on this machine (a failure
// under CI=true, where every requirement must be met), and finish() prints the line that
// tests/run.sh totals and exits 1 if anything failed.
const CI = process.env.CI === 'true' || process.env.CI === '1';
let passes = 0;
let failures = 0;
let skipped = 0;

export function check(ok, what) {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (ok) passes++;
  else failures++;
}

export function skip(what, requirement) {
  if (CI) return check(false, `${what}: needs ${requirement}`);
  console.log(`SKIPPED ${what}: needs ${requirement}`);
  skipped++;
}

export function finish(name, note = '') {
  console.log(`${name} test result: ${failures ? 'FAILED' : 'ok'}. ${passes} passed; ${failures} failed; ${skipped} skipped${note}`);
  process.exit(failures ? 1 : 0);
}
