// downloads.js: GGUF files by link: downloaded with progress, checked before their bytes go
// to the worker, and kept in the browser's Cache Storage, so that a reload reads them from
// there instead of downloading again. It knows nothing of the page (links.js shows it).

// The Cache Storage cache that keeps the downloaded files, one entry per link.
const CACHE = 'gqa-lab-models';
// How many first bytes tell what a file is (the longest prefix below).
export const HEAD_BYTES = 64;

export const fmtMB = (bytes) => (bytes >= 1e9 ? `${(bytes / 1e9).toFixed(2)} GB` : `${(bytes / 1e6).toFixed(1)} MB`);

// Whether a picker value or ?model= names a link (else it names a shipped model or preset).
export const isLink = (value) => /^https?:\/\//i.test(value);

// The file's name: the link's last path segment.
export function linkName(url) {
  const { pathname, host } = new URL(url);
  return decodeURIComponent(pathname.split('/').filter(Boolean).pop() ?? '') || host;
}

// The link typed into the page, made absolute (relative to the page), or an error in words.
export function linkUrl(text) {
  const raw = text.trim();
  if (!raw) throw new Error('paste a link to a .gguf file first');
  let url;
  try {
    url = new URL(raw, location.href);
  } catch {
    throw new Error(`"${raw}" is not a link`);
  }
  if (!/^https?:$/.test(url.protocol)) throw new Error(`a link to a model must start with https:// or http:// (got "${raw}")`);
  // A Hugging Face "blob" link is the file's web page; its "resolve" link is the file.
  if (url.host === 'huggingface.co' && url.pathname.includes('/blob/')) {
    throw new Error(`this is a Hugging Face web page, not the file: use its "resolve" link, ${url.href.replace('/blob/', '/resolve/')}`);
  }
  return url.href;
}

const HTML = 'an HTML page, not a GGUF file (a Hugging Face "blob" page? use its "resolve" link)';

// What the first bytes of a would-be GGUF file say is wrong with it, in words, or null
// when they start with GGUF's magic. what: "the link" or the file's name.
export function ggufProblem(head, what) {
  const text = new TextDecoder().decode(head.subarray(0, HEAD_BYTES));
  if (text.startsWith('GGUF')) return null;
  if (head.length < 4) return `${what} has ${head.length} bytes, too few for a GGUF file`;
  if (/^\s*<(!doctype|html|head|body|\?xml)/i.test(text)) return `${what} is ${HTML}`;
  if (text.startsWith('version https://git-lfs')) return `${what} is a Git LFS pointer, not the file itself (on Hugging Face, use the "resolve" link)`;
  const shown = [...head.subarray(0, 4)].map((b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : '.')).join('');
  const hex = [...head.subarray(0, 4)].map((b) => b.toString(16).padStart(2, '0')).join(' ');
  return `${what} is not a GGUF file: it starts with "${shown}" (bytes ${hex}), not "GGUF"`;
}

// The words for an HTTP status that is not OK.
function httpProblem(status) {
  const why = { 401: 'not signed in: a gated or private model needs a token this page does not have', 403: 'forbidden', 404: 'not found',
    410: 'gone', 429: 'too many requests: try again later' }[status] ?? (status >= 500 ? 'a server error' : 'refused');
  return `the link gave HTTP ${status} (${why})`;
}

// A buffer of n bytes, or an error in words where the tab cannot hold that many.
function allocate(n) {
  try {
    return new Uint8Array(n);
  } catch {
    throw new Error(`the file is ${fmtMB(n)} or more, more than this tab can hold`);
  }
}

// The keep, or null where the browser has none (Cache Storage needs HTTPS or localhost).
const openKeep = () => globalThis.caches?.open(CACHE) ?? null;

const CANCELLED = 'the download was cancelled; nothing was kept';

// Download `url`, checking as the bytes come: the HTTP status, an HTML page (by its
// Content-Type or its first bytes), GGUF's magic, and a body shorter than its Content-Length.
// onProgress({received, total, rate, left}): total 0 when the server does not say; rate in
// bytes/s; left in seconds, or null. Returns the file's bytes, exactly.
async function download(url, onProgress, signal) {
  let res;
  try {
    res = await fetch(url, { signal });
  } catch (e) {
    if (signal.aborted) throw new Error(CANCELLED);
    throw new Error(`could not download ${url}: the server did not answer, or does not let other sites read its files (no CORS header) (${e.message})`);
  }
  if (!res.ok) throw new Error(httpProblem(res.status));
  if (/html/i.test(res.headers.get('content-type') ?? '')) {
    res.body?.cancel();
    throw new Error(`the link gave ${HTML}`);
  }
  const total = Number(res.headers.get('content-length')) || 0;
  const reader = res.body.getReader();
  try {
    return await readChecked(reader, total, onProgress, signal);
  } catch (e) {
    reader.cancel().catch(() => {});
    throw e;
  }
}

// The body from `reader`, of `total` bytes where the server said so (download's checks).
async function readChecked(reader, total, onProgress, signal) {
  const t0 = performance.now();
  let received = 0;
  let shown = 0;
  // Where the size is known, one buffer of that size, filled in place (no second copy).
  let bytes = allocate(total || 1 << 20);
  let checked = false;
  const report = () => {
    const rate = received / Math.max(1e-3, (performance.now() - t0) / 1000);
    onProgress({ received, total, rate, left: total && received ? (total - received) / rate : null });
  };
  const stopped = () => `the download stopped after ${fmtMB(received)}${total ? ` of ${fmtMB(total)}` : ''}; nothing was kept`;
  report();
  for (;;) {
    let chunk;
    try {
      chunk = await reader.read();
    } catch {
      throw new Error(signal.aborted ? CANCELLED : stopped());
    }
    if (chunk.done) break;
    const { value } = chunk;
    if (received + value.length > bytes.length) {
      const grown = allocate(Math.max(2 * bytes.length, received + value.length));
      grown.set(bytes.subarray(0, received));
      bytes = grown;
    }
    bytes.set(value, received);
    received += value.length;
    if (!checked && received >= HEAD_BYTES) {
      checked = true;
      const problem = ggufProblem(bytes.subarray(0, received), 'the link');
      if (problem) throw new Error(problem);
    }
    // At most ten progress reports a second.
    if (performance.now() - shown > 100) {
      shown = performance.now();
      report();
    }
  }
  report();
  if (total && received < total) throw new Error(stopped());
  const problem = checked ? null : ggufProblem(bytes.subarray(0, received), 'the link');
  if (problem) throw new Error(problem);
  return received === bytes.length ? bytes : bytes.slice(0, received);
}

// The GGUF file at `url`: the kept copy when there is one, else downloaded (onProgress as
// above; signal: an AbortSignal that cancels it), checked and kept. Returns {buffer, note}:
// the file's bytes and, in words, where they came from and whether they were kept.
export async function ggufByLink(url, onProgress, signal) {
  const keep = await openKeep();
  const kept = await keep?.match(url);
  if (kept) return { buffer: await kept.arrayBuffer(), note: 'read from the copy kept in this browser, no download' };
  const t0 = performance.now();
  const bytes = await download(url, onProgress, signal);
  const got = `downloaded ${fmtMB(bytes.length)} in ${((performance.now() - t0) / 1000).toFixed(1)} s`;
  if (!keep) return { buffer: bytes.buffer, note: `${got}, not kept: this browser offers Cache Storage only to pages on HTTPS or localhost` };
  try {
    // Only now, complete and checked: a download that failed halfway is never kept.
    await keep.put(url, new Response(bytes, { headers: { 'content-type': 'application/octet-stream', 'content-length': String(bytes.length) } }));
    return { buffer: bytes.buffer, note: `${got} and kept in this browser` };
  } catch (e) {
    return { buffer: bytes.buffer, note: `${got}, not kept: ${e.message}` };
  }
}

// The kept files, [{url, name, bytes}], by name.
export async function keptModels() {
  const keep = await openKeep();
  if (!keep) return [];
  const models = await Promise.all((await keep.keys()).map(async (request) => {
    const res = await keep.match(request);
    return { url: request.url, name: linkName(request.url), bytes: Number(res?.headers.get('content-length')) || 0 };
  }));
  return models.sort((a, b) => a.name.localeCompare(b.name));
}

// Delete the kept copy of `url`.
export async function forget(url) {
  await (await openKeep())?.delete(url);
}
