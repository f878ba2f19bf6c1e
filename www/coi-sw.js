// coi-sw.js: a service worker that makes the page cross-origin isolated where its host
// cannot send headers (plain static hosting). It adds the COOP/COEP headers that
// scripts/serve.mjs sends itself to every response it passes on, so that the page gets
// SharedArrayBuffer and the threaded wasm module. isolation.js registers it.
self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

self.addEventListener('fetch', (event) => {
  const request = event.request;
  // A request the browser would refuse to pass through a service worker.
  if (request.cache === 'only-if-cached' && request.mode !== 'same-origin') return;
  event.respondWith(
    fetch(request).then((response) => {
      if (response.status === 0) return response; // opaque: cannot be changed
      const headers = new Headers(response.headers);
      headers.set('Cross-Origin-Opener-Policy', 'same-origin');
      headers.set('Cross-Origin-Embedder-Policy', 'require-corp');
      if (new URL(request.url).origin === self.location.origin) headers.set('Cross-Origin-Resource-Policy', 'same-origin');
      return new Response(response.body, { status: response.status, statusText: response.statusText, headers });
    }),
  );
});
