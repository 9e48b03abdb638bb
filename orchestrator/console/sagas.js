// sagas.js - Sagas: search by status, definition, business key and time
// range, a page at a time (the API's keyset cursor), with counts by
// status that update every few seconds.
import { api, h, clear, badge, sagaLink, when, field, select, params, every, failure } from './lib.js';

const STATUSES = ['running', 'compensating', 'completed', 'compensated', 'failed', 'resolved'];

export async function render(el, { query }, stops) {
  const p = params(query);
  let defs = [];
  try { defs = await api('GET', '/v1/definitions'); } catch (_) { defs = []; }
  const status = select('status', [['', 'any'], ...STATUSES], p.status || '');
  const definition = select('definition', [['', 'any'], ...defs.map(d => d.name)], p.definition || '');
  const key = h('input', { name: 'business_key', value: p.business_key || '', placeholder: 'order-4711' });
  const since = h('input', { name: 'since', value: p.since || '', placeholder: '2h, or 2026-12-05T08:00:00Z' });
  const older = h('input', { name: 'older_than', value: p.older_than || '', placeholder: '10m' });
  const form = h('form.filters', {
    role: 'search',
    onsubmit: ev => {
      ev.preventDefault();
      const q = new URLSearchParams();
      for (const [k, c] of [['status', status], ['definition', definition], ['business_key', key], ['since', since], ['older_than', older]])
        if (c.value.trim()) q.set(k, c.value.trim());
      location.hash = `#/sagas?${q}`;
    },
  }, field('Status', status), field('Definition', definition), field('Business key', key),
  field('Created since', since), field('Created before', older),
  h('div.field', {}, h('span', {}, '\u00a0'), h('button', { type: 'submit' }, 'Search')));
  const counts = h('div.counts', { 'aria-live': 'off' });
  const results = h('div');
  clear(el, h('h1', {}, 'Sagas'), counts, form, results);

  async function loadCounts() {
    try {
      const st = await api('GET', '/v1/stats');
      const row = (p.definition && st.by_definition[p.definition]) || st.by_status;
      clear(counts, h('span.label', {}, p.definition ? `${p.definition}:` : 'All:'),
        STATUSES.map(s => h('a.count', { href: `#/sagas?status=${s}${p.definition ? `&definition=${encodeURIComponent(p.definition)}` : ''}` },
          badge(s), ' ', String(row[s] || 0))),
        h('span.sub', {}, ` started last minute ${st.started.last_minute}, finished ${st.finished.last_minute}`));
    } catch (e) { clear(counts, failure(e)); }
  }

  const shown = [];
  async function page(cursor) {
    const q = new URLSearchParams();
    for (const k of ['status', 'definition', 'business_key', 'since', 'older_than']) if (p[k]) q.set(k, p[k]);
    q.set('limit', '50');
    if (cursor) q.set('cursor', cursor);
    let r;
    try { r = await api('GET', `/v1/sagas?${q}`); } catch (e) { clear(results, failure(e)); return; }
    shown.push(...r.sagas);
    const more = r.next_cursor ? h('button', { type: 'button', onclick: () => page(r.next_cursor) }, 'Next 50') : null;
    clear(results, shown.length === 0 ? h('p', {}, 'No saga matches.') :
      h('div.scroll', {}, h('table.list', { id: 'sagas' },
        h('caption', {}, `${shown.length} saga(s), newest first${r.next_cursor ? '' : ' (all)'}`),
        h('thead', {}, h('tr', {}, ['Saga', 'Definition', 'Status', 'Step', 'Business key', 'Created', 'Updated'].map(t => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, shown.map(s => h('tr', {},
          h('td', {}, sagaLink(s.id, s.id.slice(0, 8))), h('td', {}, `${s.name}@${s.version}`),
          h('td', {}, badge(s.status)), h('td.num', {}, s.step), h('td', {}, s.business_key || ''),
          h('td', {}, when(s.created_at)), h('td', {}, when(s.updated_at))))))), more);
  }
  await Promise.all([loadCounts(), page(null)]);
  every(5, loadCounts, stops);
}
