// app.js - the console's entry: who is logged in (or the login form),
// and which page the address names (#/attention, #/sagas, #/saga/ID,
// #/repair, #/services, #/definitions[/NAME]).
import { api, h, clear, session, say, failure, Problem } from './lib.js';
import * as attention from './attention.js';
import * as sagas from './sagas.js';
import * as saga from './saga.js';
import * as repair from './repair.js';
import * as services from './services.js';
import * as definitions from './definitions.js';

const main = () => document.getElementById('main');
let stops = [];
let routed = 0;

function stopPage() {
  for (const f of stops) f();
  stops = [];
}

function showWho() {
  const who = document.getElementById('who');
  const out = h('button.link', { type: 'button', onclick: logout }, 'Log out');
  clear(who, h('span', { title: 'who you are, as the history records it' }, session.name),
    ' ', h('span.role', {}, session.role), ' ', session.role === 'local' ? null : out);
  document.getElementById('nav').hidden = false;
}

async function logout() {
  try { await api('DELETE', '/v1/session'); } catch (_) { /* cleared anyway */ }
  Object.assign(session, { name: null, role: null, csrf: null, mayRepair: false });
  loginForm('Logged out.');
}

function loginForm(message) {
  stopPage();
  document.getElementById('nav').hidden = true;
  clear(document.getElementById('who'));
  const token = h('input', { type: 'password', name: 'token', id: 'token', autocomplete: 'off', required: true, spellcheck: 'false' });
  const note = h('p.problem', { role: 'alert' }, message || '');
  const form = h('form.login', {
    onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        const who = await api('POST', '/v1/session', { token: token.value.trim() });
        token.value = '';
        adopt(who);
        route();
      } catch (e) {
        note.textContent = e instanceof Problem ? e.message : String(e);
      }
    },
  },
  h('h1', {}, 'Log in'),
  h('p', {}, 'With an API token (', h('code', {}, 'sagactl tokens create --role operator --name you'),
    '). sagad keeps it in a cookie this page cannot read; the history names the token on every repair.'),
  h('div.field', {}, h('label', { for: 'token' }, 'Token'), token),
  h('button', { type: 'submit' }, 'Log in'), note);
  clear(main(), form);
  token.focus();
}

function adopt(who) {
  Object.assign(session, {
    name: who.name, role: who.role, csrf: who.csrf || null,
    mayRepair: !!who.may_repair, traceUrl: who.trace_url || null,
  });
  showWho();
}

const pages = [
  [/^\/?$/, () => attention.render],
  [/^\/attention$/, () => attention.render],
  [/^\/sagas$/, () => sagas.render],
  [/^\/saga\/([0-9a-fA-F-]{36})$/, () => saga.render],
  [/^\/repair$/, () => repair.render],
  [/^\/services$/, () => services.render],
  [/^\/definitions$/, () => definitions.render],
  [/^\/definitions\/([^/]+)$/, () => definitions.render],
];

function route() {
  stopPage();
  say('');
  const raw = location.hash.replace(/^#/, '') || '/attention';
  const [path, query] = raw.split('?');
  for (const a of document.querySelectorAll('#nav a')) {
    const here = path.startsWith(a.getAttribute('href').slice(1)) ||
      (path.startsWith('/saga/') && a.getAttribute('href') === '#/sagas');
    if (here) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  for (const [re, page] of pages) {
    const m = path.match(re);
    if (m) {
      const el = clear(main());
      page()(el, { args: m.slice(1).map(decodeURIComponent), query }, stops)
        .catch(e => clear(el, failure(e)));
      // After a move, the page's content is where the keyboard goes on
      // from; a fresh load starts from the top (the skip link).
      if (routed++) main().focus({ preventScroll: true });
      return;
    }
  }
  clear(main(), h('h1', {}, 'Not found'), h('p', {}, 'No page ', h('code', {}, path), '.'));
}

async function start() {
  window.addEventListener('saga-logged-out', () => loginForm('Your session ended (the token was revoked, or sagad forgot it): log in again.'));
  try {
    adopt(await api('GET', '/v1/session'));
  } catch (e) {
    if (e instanceof Problem && e.status === 401) { loginForm(); window.addEventListener('hashchange', () => session.name && route()); return; }
    clear(main(), failure(e));
    return;
  }
  window.addEventListener('hashchange', () => session.name && route());
  say('');
  route();
}

start();
