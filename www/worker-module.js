// worker-module.js: which of the two wasm builds (scripts/build-web.sh) the worker loads.

// Which build to load, and why: the threaded one (pkg-threads: rayon's pool in Web Workers,
// on shared memory, and relaxed SIMD's fused multiply-add) needs a cross-origin isolated page
// and a browser with relaxed SIMD; ?threads=N sets the pool's size and ?threads=1 picks the
// single-thread build (pkg, plain simd128).
const MAX_THREADS = 64;
// A module whose one function uses i8x16.relaxed_swizzle: valid only where relaxed SIMD is.
const RELAXED_SIMD_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 15, 1, 13, 0,
  65, 1, 253, 15, 65, 2, 253, 15, 253, 128, 2, 11]);
export function chooseModule() {
  const asked = new URL(self.location.href).searchParams.get('threads');
  const cores = navigator.hardwareConcurrency || 1;
  let note = '';
  let n = Math.min(cores, MAX_THREADS);
  if (asked !== null) {
    if (/^[0-9]+$/.test(asked) && Number(asked) >= 1 && Number(asked) <= MAX_THREADS) {
      n = Number(asked);
      note = `?threads=${n}`;
    } else {
      note = `?threads=${asked} is not a thread count from 1 to ${MAX_THREADS}, so ${n} (this device's cores)`;
    }
  }
  if (n === 1) return { path: './pkg/gqa.js', threads: 1, why: note || 'this device reports one core' };
  if (!self.crossOriginIsolated || typeof SharedArrayBuffer !== 'function') {
    return {
      path: './pkg/gqa.js', threads: 1,
      why: 'the page is not cross-origin isolated: its server sends no COOP/COEP headers and no service worker ' +
        `added them, so threads cannot share memory${note ? `; ${note} is ignored` : ''}`,
    };
  }
  if (!WebAssembly.validate(RELAXED_SIMD_PROBE)) {
    return {
      path: './pkg/gqa.js', threads: 1,
      why: `this browser has no WebAssembly relaxed SIMD, which the threaded build uses${note ? `; ${note} is ignored` : ''}`,
    };
  }
  return { path: './pkg-threads/gqa.js', threads: n, why: note || 'one per core' };
}
