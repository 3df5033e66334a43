// The console's entry point (see docs/console.md). Map:
// - route(): reads the hash (#/overview, #/sagas?…, #/sagas/{id}, #/dead-letters, #/bulk,
//   #/notifications), runs the page, and runs the previous page's cleanup (timers) first.
// - signin(): the sign-in form; a token is checked against /api/console/overview before use.
// Pages live in overview.js, sagas.js, saga.js, deadletters.js, ops.js (bulk, notifications).

import {
  api, ApiError, AuthError, h, fill, main, setState, token, setSignOutHandler, signOut, errorBox,
} from './core.js';
import { overviewPage } from './overview.js';
import { sagasPage } from './sagas.js';
import { sagaPage } from './saga.js';
import { deadLettersPage } from './deadletters.js';
import { bulkPage, notificationsPage } from './ops.js';

const PAGES = {
  overview: overviewPage,
  sagas: sagasPage,
  'dead-letters': deadLettersPage,
  bulk: bulkPage,
  notifications: notificationsPage,
};

let cleanups = [];
let generation = 0;
let signinMessage = null;
let afterSignin = '#/overview';

/** What a page gets: its <main>, the hash query, and ways to register cleanup and to tell
 * whether it is still the page on screen (late answers of a left page are dropped). */
function context(query) {
  const mine = ++generation;
  return {
    main: main(),
    query,
    alive: () => mine === generation,
    onLeave: (fn) => cleanups.push(fn),
    go: (hash) => {
      if (location.hash === hash) route();
      else location.hash = hash;
    },
  };
}

function leave() {
  for (const fn of cleanups) {
    try { fn(); } catch (err) { console.error(err); }
  }
  cleanups = [];
}

function setNav(current) {
  const signedIn = current !== 'signin';
  document.getElementById('nav').hidden = !signedIn;
  document.getElementById('signout').hidden = !signedIn;
  for (const link of document.querySelectorAll('#nav a[data-nav]')) {
    if (link.dataset.nav === current) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

function startPage(name, label) {
  const el = main();
  el.replaceChildren();
  el.dataset.page = name;
  setState('loading');
  document.title = `${label} · Saga console`;
  window.scrollTo(0, 0);
}

function route() {
  leave();
  const hash = location.hash.replace(/^#/, '') || '/';
  const [path, search = ''] = hash.split('?');
  const query = new URLSearchParams(search);
  const parts = path.split('/').filter(Boolean);
  if (!token.get()) {
    if (parts.length) afterSignin = `#${hash}`;
    signin();
    return;
  }
  if (!parts.length) {
    location.replace('#/overview');
    return;
  }
  const [first, second] = parts;
  if (first === 'sagas' && second) {
    setNav('sagas');
    startPage('saga', `Saga ${second}`);
    sagaPage(context(query), decodeURIComponent(second));
    return;
  }
  const page = PAGES[first];
  if (!page || parts.length > 1) {
    setNav('');
    startPage('not-found', 'Not found');
    main().append(h('h1', {}, 'No such page'),
      errorBox(new ApiError(404, 'not_found', `There is no console page at #${path}.`)),
      h('p', {}, h('a', { href: '#/overview' }, 'Go to the overview')));
    setState('error');
    return;
  }
  setNav(first);
  const label = document.querySelector(`#nav a[data-nav="${first}"]`).textContent;
  startPage(first, label);
  page(context(query));
}

function signin() {
  setNav('signin');
  startPage('signin', 'Sign in');
  const input = h('input', {
    id: 'token', type: 'password', autocomplete: 'off', required: true, spellcheck: 'false',
  });
  const error = h('p', { id: 'signin-error', role: 'alert', class: 'alert', hidden: true });
  const submit = h('button', { id: 'signin-submit', type: 'submit', class: 'primary' }, 'Sign in');
  const notice = h('p', { id: 'signin-notice', role: 'status', class: 'notice', hidden: true });
  const form = h('form', { id: 'signin', class: 'card signin', novalidate: true },
    h('h1', {}, 'Sign in to the saga console'),
    h('p', { class: 'muted' },
      'Use the operator token (APP__AUTH__OPERATOR_TOKEN). It is kept for this browser tab only.'),
    h('div', { class: 'field' }, h('label', { for: 'token' }, 'Operator token'), input),
    notice, error, submit);
  if (signinMessage) {
    // A refusal is an error; signing out on purpose is only a notice.
    const slot = signinMessage.refused ? error : notice;
    fill(slot, signinMessage.text);
    slot.hidden = false;
    signinMessage = null;
  }
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const value = input.value.trim();
    if (!value) {
      fill(error, 'Enter the operator token.');
      error.hidden = false;
      input.focus();
      return;
    }
    submit.disabled = true;
    submit.textContent = 'Checking the token…';
    token.set(value);
    try {
      await api('/api/console/overview');
    } catch (err) {
      if (err instanceof AuthError) {
        token.clear();
        notice.hidden = true;
        fill(error, err.message);
        error.hidden = false;
        submit.disabled = false;
        submit.textContent = 'Sign in';
        input.select();
        return;
      }
      // Anything else (the orchestrator busy, a 5xx) is no verdict on the token: the overview
      // shows that error itself.
    }
    const target = afterSignin;
    afterSignin = '#/overview';
    if (location.hash === target) route();
    else location.hash = target;
  });
  main().append(form);
  setState('ready');
  input.focus();
}

setSignOutHandler((message, quiet) => {
  leave();
  generation++;
  signinMessage = message ? { text: message, refused: !quiet } : null;
  if (location.hash && location.hash !== '#/' && location.hash !== '#') {
    afterSignin = location.hash;
  }
  signin();
});

document.getElementById('signout').addEventListener('click', () => {
  signOut('Signed out. The token was removed from this tab.', true);
  afterSignin = '#/overview';
  history.replaceState(null, '', '#/');
});

window.addEventListener('hashchange', route);
route();
