// Serves www/ on 127.0.0.1 for the browser demo: the right MIME types (application/wasm
// for the module), COOP/COEP headers (cross-origin isolation, for precise timers and
// SharedArrayBuffer), no caching. Plain Node, no packages.
//
//   node scripts/serve.mjs [--port 8080] [--root www]     (--port 0: any free port)
//
// Prints "GQA Lab demo: http://127.0.0.1:PORT/" once listening.
import { createServer } from 'node:http';
import { readFile, stat } from 'node:fs/promises';
import { extname, join, normalize, resolve, sep } from 'node:path';
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

export function serve({ root, port = 8080 }) {
  const base = resolve(root);
  const server = createServer(async (req, res) => {
    const headers = {
      'Cross-Origin-Opener-Policy': 'same-origin',
      'Cross-Origin-Embedder-Policy': 'require-corp',
      'Cross-Origin-Resource-Policy': 'same-origin',
      'Cache-Control': 'no-store',
    };
    try {
      let path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
      if (path.endsWith('/')) path += 'index.html';
      const file = normalize(join(base, path));
      if (file !== base && !file.startsWith(base + sep)) throw Object.assign(new Error('outside root'), { code: 'ENOENT' });
      if (!(await stat(file)).isFile()) throw Object.assign(new Error('not a file'), { code: 'ENOENT' });
      const body = await readFile(file);
      headers['Content-Type'] = MIME[extname(file)] ?? 'application/octet-stream';
      res.writeHead(200, headers).end(req.method === 'HEAD' ? undefined : body);
    } catch (e) {
      const code = e.code === 'ENOENT' || e.code === 'ENOTDIR' ? 404 : 500;
      res.writeHead(code, { ...headers, 'Content-Type': 'text/plain' }).end(code === 404 ? 'not found' : String(e));
    }
  });
  return new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(Number(port), '127.0.0.1', () => ok(server));
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const root = arg('--root', fileURLToPath(new URL('../www', import.meta.url)));
  const server = await serve({ root, port: arg('--port', process.env.PORT ?? 8080) });
  console.log(`GQA Lab demo: http://127.0.0.1:${server.address().port}/`);
}
