// isolation.js: the threaded wasm module needs a cross-origin isolated page (COOP/COEP
// headers). scripts/serve.mjs sends them; a static host that cannot gets them from our
// service worker (coi-sw.js): registered once, then the page reloads under it. If the
// page is still not isolated after that reload (service workers blocked, or not a secure
// context), it stays on one thread and the backend note says why; it never reloads twice.
const RELOADED = 'gqa-coi-reloaded';

// Resolves to true when the page is about to reload under the service worker.
export async function becomeIsolated() {
  if (self.crossOriginIsolated || !('serviceWorker' in navigator) || !self.isSecureContext) return false;
  if (sessionStorage.getItem(RELOADED)) {
    sessionStorage.removeItem(RELOADED);
    return false;
  }
  try {
    const registration = await navigator.serviceWorker.register(new URL('./coi-sw.js', import.meta.url));
    if (!navigator.serviceWorker.controller) {
      await new Promise((resolve) => {
        const worker = registration.installing ?? registration.waiting ?? registration.active;
        if (worker?.state === 'activated') return resolve();
        worker?.addEventListener('statechange', () => worker.state === 'activated' && resolve());
      });
    }
  } catch {
    return false; // no service worker here: one thread
  }
  sessionStorage.setItem(RELOADED, '1');
  location.reload();
  return true;
}
