// Serves www/ on 127.0.0.1 for the browser demo: the right MIME types (application/wasm
// for the module), COOP/COEP headers (cross-origin isolation: SharedArrayBuffer for the
// threaded module, and precise timers), no caching. Plain Node, no packages.
// --no-isolation leaves the COOP/COEP headers out, as plain static hosting does (the
// page then isolates itself with its service worker, www/coi-sw.js, or runs on one thread).
//
// Only GET and HEAD (405 otherwise); only files whose real path (symbolic links
// resolved) is inside the root; error bodies never show a path.
//
//   node scripts/serve.mjs [--port 8080] [--root www] [--no-isolation]   (--port 0: any free port)
//
// Prints "GQA Lab demo: http://127.0.0.1:PORT/" once listening.
import { createServer } from 'node:http';
import { readFile, realpath, stat } from 'node:fs/promises';
import { extname, join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.txt': 'text/plain; charset=utf-8',
};

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

const ALLOWED_METHODS = 'GET, HEAD';

// An error response: a status and a fixed text, never the error's own message (which
// may hold a path of this machine).
class HttpError extends Error {
  constructor(status, text) {
    super(text);
    this.status = status;
  }
}
const notFound = () => new HttpError(404, 'not found');

// The real path of the file that `urlPath` names inside `root` (a real path itself),
// or an HttpError.
async function resolveFile(root, urlPath) {
  let path;
  try {
    path = decodeURIComponent(urlPath);
  } catch {
    throw new HttpError(400, 'bad request');
  }
  if (path.includes('\0')) throw new HttpError(400, 'bad request');
  if (path.endsWith('/')) path += 'index.html';
  let file;
  try {
    file = await realpath(join(root, path));
  } catch {
    throw notFound();
  }
  // join() resolves "..", realpath() symbolic links: what is left must be in the root.
  if (!file.startsWith(root + sep)) throw notFound();
  if (!(await stat(file)).isFile()) throw notFound();
  return file;
}

export async function serve({ root, port = 8080, isolate = true }) {
  const base = await realpath(root);
  const isolation = {
    'Cross-Origin-Opener-Policy': 'same-origin',
    'Cross-Origin-Embedder-Policy': 'require-corp',
    'Cross-Origin-Resource-Policy': 'same-origin',
  };
  const server = createServer(async (req, res) => {
    const headers = { ...(isolate ? isolation : {}), 'Cache-Control': 'no-store' };
    try {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        headers.Allow = ALLOWED_METHODS;
        throw new HttpError(405, 'method not allowed');
      }
      const file = await resolveFile(base, new URL(req.url, 'http://x').pathname);
      const body = await readFile(file);
      headers['Content-Type'] = MIME[extname(file)] ?? 'application/octet-stream';
      // Also on HEAD, which the page uses to learn a model file's size.
      headers['Content-Length'] = body.length;
      res.writeHead(200, headers).end(req.method === 'HEAD' ? undefined : body);
    } catch (e) {
      if (!(e instanceof HttpError)) console.error(`serve: ${req.method} ${req.url}: ${e?.stack ?? e}`);
      const { status, message } = e instanceof HttpError ? e : new HttpError(500, 'internal error');
      res.writeHead(status, { ...headers, 'Content-Type': 'text/plain' }).end(req.method === 'HEAD' ? undefined : message);
    }
  });
  return new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(Number(port), '127.0.0.1', () => ok(server));
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const root = arg('--root', fileURLToPath(new URL('../www', import.meta.url)));
  const isolate = !process.argv.includes('--no-isolation');
  const server = await serve({ root, port: arg('--port', process.env.PORT ?? 8080), isolate });
  console.log(`GQA Lab demo: http://127.0.0.1:${server.address().port}/`);
}
