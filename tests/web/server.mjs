// The demo server (scripts/serve.mjs) on a folder made here: it serves files with
// their MIME type and isolation headers, answers only GET and HEAD, never serves a
// file outside its root (through "..", an encoded "..", or a symbolic link), and its
// error bodies name no path.
//
//   node tests/web/server.mjs
import { mkdtempSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serve } from '../../scripts/serve.mjs';
import { check, finish } from './checks.mjs';

// A root with a page, a script, a folder, links inside and out, and a secret beside it.
const dir = mkdtempSync(join(tmpdir(), 'gqa-serve-'));
const root = join(dir, 'www');
mkdirSync(join(root, 'sub'), { recursive: true });
writeFileSync(join(root, 'index.html'), '<p>page</p>');
writeFileSync(join(root, 'app.js'), 'console.log(1);');
writeFileSync(join(root, 'sub', 'index.html'), '<p>sub</p>');
writeFileSync(join(dir, 'secret.txt'), 'SECRET');
mkdirSync(join(dir, 'outside'));
writeFileSync(join(dir, 'outside', 'index.html'), 'SECRET');
symlinkSync(join(dir, 'secret.txt'), join(root, 'escape.txt'));
symlinkSync(join(dir, 'outside'), join(root, 'escape-dir'));
symlinkSync(join(root, 'app.js'), join(root, 'inside.js'));

const server = await serve({ root, port: 0 });
const port = server.address().port;

// One request with a raw path (not normalized by a URL parser on the way out).
function fetchRaw(method, path) {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end();
  });
}

// No error body may show where the files are.
const hidesPaths = (body) => !body.includes(dir) && !body.includes(tmpdir());

try {
  const page = await fetchRaw('GET', '/');
  check(page.status === 200 && page.body === '<p>page</p>', `GET / serves index.html (${page.status})`);
  check(page.headers['content-type'] === 'text/html; charset=utf-8', `with its MIME type (${page.headers['content-type']})`);
  check(page.headers['cross-origin-opener-policy'] === 'same-origin' && page.headers['cross-origin-embedder-policy'] === 'require-corp',
    'with the cross-origin isolation headers');

  const head = await fetchRaw('HEAD', '/app.js');
  check(head.status === 200 && head.body === '' && /javascript/.test(head.headers['content-type']), `HEAD /app.js: headers, no body (${head.status})`);
  const sub = await fetchRaw('GET', '/sub/');
  check(sub.status === 200 && sub.body === '<p>sub</p>', `GET /sub/ serves sub/index.html (${sub.status})`);
  const inside = await fetchRaw('GET', '/inside.js');
  check(inside.status === 200 && inside.body === 'console.log(1);', `a link to a file inside the root is served (${inside.status})`);

  for (const method of ['POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH']) {
    const r = await fetchRaw(method, '/index.html');
    check(r.status === 405 && r.headers.allow === 'GET, HEAD', `${method} is refused: ${r.status}, Allow: ${r.headers.allow}`);
  }

  for (const path of ['/../secret.txt', '/%2e%2e/secret.txt', '/sub/..%2f..%2fsecret.txt', '/escape.txt', '/escape-dir/', '/escape-dir/index.html']) {
    const r = await fetchRaw('GET', path);
    check(r.status === 404 && !r.body.includes('SECRET') && hidesPaths(r.body), `GET ${path} stays inside the root: ${r.status} "${r.body}"`);
  }

  for (const [path, status] of [['/missing.js', 404], ['/sub', 404], ['/%E0%A4%A', 400], ['/a%00b', 400]]) {
    const r = await fetchRaw('GET', path);
    check(r.status === status && hidesPaths(r.body), `GET ${path}: ${r.status} "${r.body}" (expected ${status}, no path)`);
  }
} catch (e) {
  check(false, `server test aborted: ${e.stack ?? e}`);
} finally {
  server.close();
  rmSync(dir, { recursive: true, force: true });
}
finish('server');
