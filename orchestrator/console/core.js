// The console's shared helpers (see docs/console.md). Map:
// - token: the operator token, in sessionStorage only (never in a URL).
// - api(): same-origin JSON calls with the token; 401/403 → AuthError, other errors → ApiError.
// - h()/s(): build HTML/SVG elements; every piece of data goes in as text, never as markup.
// - formatting: local times with relative age, durations, counts, money.
// - page state: setState(), showError() (an [role=alert] with code, message and details).
// - confirmAction(): the shared <dialog id="confirm">.

export const TOKEN_KEY = 'saga-console-token';

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

/** A refused or missing token: the console goes back to sign-in with `message`. */
export class AuthError extends Error {}

/** Any other failed call: the JSON error's code, message and details. */
export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

/** Calls the API; `query` values that are empty are left out. Resolves to the parsed JSON. */
export async function api(path, { method = 'GET', body, query } = {}) {
  let url = path;
  if (query) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) {
      if (value !== undefined && value !== null && value !== '') params.set(key, String(value));
    }
    const text = params.toString();
    if (text) url += (url.includes('?') ? '&' : '?') + text;
  }
  const headers = { Accept: 'application/json' };
  const current = token.get();
  if (current) headers.Authorization = `Bearer ${current}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      credentials: 'omit',
    });
  } catch (err) {
    throw new ApiError(0, 'network_error', `The orchestrator did not answer (${err.message}).`);
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (response.ok) return data;
  const code = (data && (data.code || data.error)) || `http_${response.status}`;
  const message = (data && data.message) || `${response.status} ${response.statusText}`;
  if (response.status === 401 || response.status === 403) {
    throw new AuthError(`The token was refused (${response.status} ${code}): ${message}`);
  }
  throw new ApiError(response.status, code, message, data && data.details);
}

// ---- DOM building -------------------------------------------------------------------------

function build(el, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'text') el.textContent = String(value);
    else if (key === 'class') el.setAttribute('class', value);
    else if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(key, '');
    else el.setAttribute(key, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** An HTML element: h('td', {class: 'num'}, 'text', otherNode). */
export const h = (tag, attrs, ...children) => build(document.createElement(tag), attrs, children);

const SVG_NS = 'http://www.w3.org/2000/svg';
/** An SVG element, same shape as h(). */
export const s = (tag, attrs, ...children) =>
  build(document.createElementNS(SVG_NS, tag), attrs, children);

/** Replaces `el`'s children. */
export const fill = (el, ...children) => {
  el.replaceChildren();
  return build(el, {}, children);
};

export const $ = (selector, root = document) => root.querySelector(selector);

// ---- formatting ----------------------------------------------------------------------------

const timeFmt = new Intl.DateTimeFormat(undefined, {
  hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false,
});
const dateTimeFmt = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: 'numeric',
  hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false,
});

/** Local time; the date too when it is not today. */
export function localTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  const today = new Date();
  return date.toDateString() === today.toDateString() ? timeFmt.format(date) : dateTimeFmt.format(date);
}

/** "12 s", "3 min", "2 h 5 min", "4 d". */
export function span(seconds) {
  const abs = Math.max(0, Math.round(seconds));
  if (abs < 60) return `${abs} s`;
  if (abs < 3600) return `${Math.floor(abs / 60)} min`;
  if (abs < 86400) {
    const min = Math.floor((abs % 3600) / 60);
    return `${Math.floor(abs / 3600)} h${min ? ` ${min} min` : ''}`;
  }
  return `${Math.floor(abs / 86400)} d`;
}

export const ago = (iso) => {
  const seconds = (Date.now() - new Date(iso).getTime()) / 1000;
  return seconds < -1 ? `in ${span(-seconds)}` : `${span(seconds)} ago`;
};

/** A <time> with the local time and its age; the full ISO value as its tooltip. */
export function when(iso) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  return h('time', { datetime: iso, title: new Date(iso).toString() },
    localTime(iso), h('span', { class: 'age' }, ` · ${ago(iso)}`));
}

export function ms(value) {
  if (value === null || value === undefined) return '—';
  if (value < 1000) return `${Math.round(value)} ms`;
  if (value < 60000) return `${(value / 1000).toFixed(value < 10000 ? 2 : 1)} s`;
  return span(value / 1000);
}

export const num = (value) =>
  (value === null || value === undefined ? '—' : Number(value).toLocaleString());

/** "1 message", "3 messages". */
export const plural = (count, noun) => `${num(count)} ${noun}${Number(count) === 1 ? '' : 's'}`;

export const money = (cents) =>
  (cents === null || cents === undefined ? '—'
    : (cents / 100).toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 }));

/** A status label: colour from `tone` (ok, warn, bad, info), always with its text. */
export const badge = (text, tone = 'info') => h('span', { class: `badge badge-${tone}` }, text);

export function toneOf(value) {
  switch (value) {
    case 'COMPLETED': case 'SENT': case 'CHARGED': case 'RESERVED': case 'up': return 'ok';
    case 'FAILED': case 'DECLINED': case 'down': return 'bad';
    case 'PENDING': case 'AWAITING_PAYMENT': case 'AWAITING_STOCK': return 'info';
    default: return 'warn';
  }
}

// ---- page state and errors -----------------------------------------------------------------

export const main = () => document.getElementById('page');

export function setState(state) {
  main().dataset.state = state;
}

/** An alert describing `err` (code, message, each detail), for placing in the page. */
export function errorBox(err, prefix) {
  const box = h('div', { role: 'alert', class: 'alert' });
  if (prefix) box.append(h('strong', {}, prefix), ' ');
  box.append(h('code', {}, err.code || 'error'), ': ', err.message || String(err));
  if (Array.isArray(err.details) && err.details.length) {
    box.append(h('ul', {}, err.details.map((d) =>
      h('li', {}, d.field ? [h('code', {}, d.field), `: ${d.message}`] : JSON.stringify(d)))));
  }
  return box;
}

/** Puts the error into `slot` (an element the page reserved) and marks the page `error`.
 * An AuthError goes back to sign-in instead. */
export function showError(slot, err) {
  if (err instanceof AuthError) {
    signOut(err.message);
    return;
  }
  if (!(err instanceof ApiError)) console.error(err);
  fill(slot, errorBox(err));
  setState('error');
}

let onSignOut = () => {};
export const setSignOutHandler = (fn) => { onSignOut = fn; };
export function signOut(message, quiet = false) {
  token.clear();
  onSignOut(message, quiet);
}

// ---- confirmation --------------------------------------------------------------------------

/** Opens dialog#confirm with `text`; resolves true when the operator presses `yesLabel`. */
export function confirmAction(text, yesLabel = 'Confirm') {
  const dialog = document.getElementById('confirm');
  const yes = document.getElementById('confirm-yes');
  const no = document.getElementById('confirm-no');
  document.getElementById('confirm-text').textContent = text;
  yes.textContent = yesLabel;
  return new Promise((resolve) => {
    const done = (answer) => {
      yes.removeEventListener('click', onYes);
      no.removeEventListener('click', onNo);
      dialog.removeEventListener('cancel', onNo);
      if (dialog.open) dialog.close();
      resolve(answer);
    };
    const onYes = () => done(true);
    const onNo = () => done(false);
    yes.addEventListener('click', onYes);
    no.addEventListener('click', onNo);
    dialog.addEventListener('cancel', onNo);
    dialog.showModal();
    no.focus();
  });
}

// ---- forms ---------------------------------------------------------------------------------

/** A labelled control: a <div class="field"> with <label for=id> and the control. */
export function field(label, control) {
  return h('div', { class: 'field' }, h('label', { for: control.id }, label), control);
}

export function select(id, options, value) {
  return h('select', { id, name: id },
    options.map(([optValue, label]) =>
      h('option', { value: optValue, selected: optValue === (value || '') }, label)));
}

export const tableWrap = (table) => h('div', { class: 'table-wrap' }, table);

export const SAGA_STATES = ['AWAITING_PAYMENT', 'AWAITING_STOCK', 'RELEASING_STOCK',
  'REFUNDING_PAYMENT', 'COMPLETED', 'FAILED'];
export const STATE_OPTIONS = [['', 'Any state'], ...SAGA_STATES.map((v) => [v, v])];
export const STATUS_OPTIONS = [['', 'Any status'], ['PENDING', 'PENDING'],
  ['COMPLETED', 'COMPLETED'], ['FAILED', 'FAILED']];
export const REASON_OPTIONS = [['', 'Any reason'], ['payment_declined', 'payment_declined'],
  ['out_of_stock', 'out_of_stock'], ['timed_out', 'timed_out']];

/** Marks the controls named in a 422's details (field name → control id). */
export function markInvalid(form, err, ids) {
  for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
  for (const detail of (err && err.details) || []) {
    const id = ids[detail.field];
    const control = id && document.getElementById(id);
    if (control) control.setAttribute('aria-invalid', 'true');
  }
}
