// lib.js - what every page of the console shares: the API calls (with
// the session's CSRF token on every change), building elements (text is
// always set as text, never parsed as HTML: every value is escaped by
// construction), and formatting times and durations.

export const session = { name: null, role: null, csrf: null, mayRepair: false, traceUrl: null };

export class Problem extends Error {
  constructor(status, doc) {
    super((doc && (doc.detail || doc.title)) || `HTTP ${status}`);
    this.status = status;
    this.code = doc && doc.code;
  }
}

// One API call; the answer's JSON, or a Problem.
export async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && session.csrf) headers['X-CSRF-Token'] = session.csrf;
  const res = await fetch(path, {
    method, headers, credentials: 'same-origin', cache: 'no-store',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status === 204) return null;
  let doc = null;
  try { doc = await res.json(); } catch (_) { doc = null; }
  if (!res.ok) {
    if (res.status === 401 && !path.startsWith('/v1/session')) window.dispatchEvent(new Event('saga-logged-out'));
    throw new Problem(res.status, doc);
  }
  return doc;
}

// h('tag.class', {attr: v, onclick: f}, child, ...): children are
// elements or text (strings and numbers become text nodes).
export function h(tag, attrs, ...children) {
  const [name, ...classes] = tag.split('.');
  const el = document.createElement(name);
  if (classes.length) el.className = classes.join(' ');
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

const SVG = 'http://www.w3.org/2000/svg';
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function badge(status) {
  return h(`span.badge.st-${String(status).replace(/[^a-z_]/g, '')}`, {}, status);
}

export function sagaLink(id, text) {
  return h('a', { href: `#/saga/${encodeURIComponent(id)}` }, text || id);
}

// "3m 20s", "2h 5m", "4d 1h" from seconds.
export function age(seconds) {
  if (seconds === null || seconds === undefined || isNaN(seconds)) return '-';
  let t = Math.max(0, Math.round(Number(seconds)));
  if (t < 60) return `${t}s`;
  const d = Math.floor(t / 86400); t -= d * 86400;
  const hh = Math.floor(t / 3600); t -= hh * 3600;
  const m = Math.floor(t / 60); const sec = t - m * 60;
  if (d) return `${d}d ${hh}h`;
  if (hh) return `${hh}h ${m}m`;
  return `${m}m ${sec}s`;
}

export function ms(v) {
  if (v === null || v === undefined) return '-';
  return v < 1000 ? `${Math.round(v)} ms` : `${(v / 1000).toFixed(v < 10000 ? 2 : 1)} s`;
}

export function when(iso) {
  if (!iso) return '-';
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleString();
}

export function json(v) {
  return h('pre.json', {}, v === undefined || v === null ? 'null' : JSON.stringify(v, null, 2));
}

export function errorText(err) {
  if (!err) return '';
  if (typeof err === 'string') return err;
  const code = err.code ? `${err.code}: ` : '';
  return `${code}${err.message || JSON.stringify(err)}`;
}

export function say(text) {
  document.getElementById('status').textContent = text;
}

export function failure(e) {
  return h('p.problem', { role: 'alert' }, e instanceof Problem ? `${e.status}: ${e.message}` : String(e));
}

// A labelled form control.
export function field(label, control, hint) {
  const id = control.id || `f-${label.toLowerCase().replace(/[^a-z0-9]+/g, '-')}`;
  control.id = id;
  return h('div.field', {}, h('label', { for: id }, label), control, hint ? h('small', {}, hint) : null);
}

export function select(name, options, value) {
  return h('select', { name }, options.map(o => {
    const [v, t] = Array.isArray(o) ? o : [o, o];
    return h('option', { value: v, selected: v === value }, t);
  }));
}

// Query parameters of the hash route (#/sagas?status=failed).
export function params(query) {
  return Object.fromEntries(new URLSearchParams(query || ''));
}

// setInterval that the router stops when the page changes.
export function every(seconds, fn, stops) {
  const t = setInterval(fn, seconds * 1000);
  stops.push(() => clearInterval(t));
}
