// notices.js: the page's error, notice and progress lines.
const $ = (id) => document.getElementById(id);

export function fail(message) {
  const el = $('error');
  el.textContent = message;
  el.hidden = false;
}

export function clearError() {
  $('error').hidden = true;
}

export function notice(message) {
  $('notice').textContent = message;
  $('notice').hidden = !message;
}

// fraction: 0 to 1, undefined for a bar without an end, null to hide the bar.
export function progress(fraction, label = '') {
  const bar = $('progress');
  bar.hidden = fraction === null;
  if (fraction !== null) {
    if (fraction === undefined) bar.removeAttribute('value');
    else bar.value = fraction;
  }
  $('progress-label').textContent = label;
}
