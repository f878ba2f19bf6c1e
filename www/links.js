// links.js: the Model fieldset's GGUF-by-link part: the link field, the download's progress
// line and Cancel, the list of kept models (each with Load and Delete), and the picker entry
// of a model opened by link. downloads.js does the downloading and keeping.
import * as downloads from './downloads.js';
import { fail, notice, progress } from './notices.js';

const $ = (id) => document.getElementById(id);

// app.js's loader of a link (set by wireLinks).
let openLink = () => {};

function fmtLeft(seconds) {
  if (seconds === null) return '';
  const s = Math.ceil(seconds);
  return s < 60 ? `, ${s} s left` : `, ${Math.floor(s / 60)} min ${s % 60} s left`;
}

// "12.3 MB of 98.4 MB, 45.0 MB/s, 2 s left" (without the size where the server does not say it).
export function describeProgress({ received, total, rate, left }) {
  return `${downloads.fmtMB(received)}${total ? ` of ${downloads.fmtMB(total)}` : ''}, ${(rate / 1e6).toFixed(1)} MB/s${fmtLeft(left)}`;
}

// The GGUF file at `url` as downloads.ggufByLink gives it, its progress on the page's bar,
// with Cancel shown while it downloads; the kept list is redrawn after.
export async function fetchLinked(url) {
  const name = downloads.linkName(url);
  const controller = new AbortController();
  $('download-cancel').hidden = false;
  $('download-cancel').onclick = () => controller.abort();
  progress(undefined, `opening ${url}`);
  try {
    const onProgress = (p) => progress(p.total ? p.received / p.total : undefined, `downloading ${name}: ${describeProgress(p)}`);
    return await downloads.ggufByLink(url, onProgress, controller.signal);
  } finally {
    $('download-cancel').hidden = true;
    showKept();
  }
}

// The picker's entry for a link (its value is the link, as ?model= and shared links carry
// it), added where missing and chosen. bytes: the file's size once known.
export function pickLink(url, bytes = 0) {
  const picker = $('model-select');
  const label = `${downloads.linkName(url)} (GGUF by link${bytes ? `, ${downloads.fmtMB(bytes)}` : ''}, ${new URL(url).host})`;
  let entry = [...picker.options].find((o) => o.value === url);
  if (!entry) picker.add((entry = new Option(label, url)));
  entry.textContent = label;
  picker.value = url;
}

// The kept models, one line each: name, size, Load and Delete.
export async function showKept() {
  const models = await downloads.keptModels();
  $('kept').hidden = models.length === 0;
  $('kept-list').replaceChildren(...models.map(({ url, name, bytes }) => {
    const li = document.createElement('li');
    li.title = url;
    const load = Object.assign(document.createElement('button'), { textContent: 'Load', className: 'kept-load' });
    load.disabled = $('link-btn').disabled;
    load.onclick = () => openLink(url);
    const del = Object.assign(document.createElement('button'), { textContent: 'Delete', className: 'kept-delete' });
    del.onclick = async () => {
      await downloads.forget(url);
      notice(`Deleted the kept copy of ${name} (${downloads.fmtMB(bytes)}); a model loaded from it stays loaded.`);
      showKept();
    };
    li.append(`${name}, ${downloads.fmtMB(bytes)} `, load, ' ', del);
    return li;
  }));
}

// Whether a link can be loaded now (the page's phase allows a load).
export function enableLinks(on) {
  $('link-btn').disabled = !on;
  for (const b of document.querySelectorAll('#kept-list .kept-load')) b.disabled = !on;
}

// The link field (its button and Enter) and the kept list call open(url) to load a link.
export function wireLinks(open) {
  openLink = open;
  const go = () => {
    try {
      open(downloads.linkUrl($('link-url').value));
    } catch (e) {
      fail(e.message);
    }
  };
  $('link-btn').onclick = go;
  $('link-url').onkeydown = (e) => {
    if (e.key === 'Enter' && !$('link-btn').disabled) go();
  };
  showKept();
}
