// attention.js - Needs attention: every failed (stuck) saga first, then
// those that made no progress for longer than a threshold, with why;
// counts per definition; the oldest ages as /metrics has them.
import { api, h, clear, badge, sagaLink, age, errorText, field, select, params, every, failure } from './lib.js';

// Why it needs someone, in the words sagactl stuck uses.
export function reason(r) {
  const err = r.error ? `; ${r.status === 'failed' ? 'error' : 'last error'} ${errorText(r.error)}` : '';
  const fr = r.failed_reason || '';
  if (r.status === 'failed' && r.step_status === 'compensation_failed') {
    return fr === 'compensation failed definitively'
      ? `compensation of ${r.step} failed definitively (attempt ${r.attempts})${err}`
      : `compensation of ${r.step} gave up after ${r.attempts} attempt(s)${err}`;
  }
  if (r.status === 'failed' && fr.startsWith('a step after the pivot cannot be run'))
    return `${r.step} cannot run: its input does not resolve, and after the pivot it cannot be compensated${err}`;
  if (r.status === 'failed')
    return `${r.step} failed definitively (attempt ${r.attempts}) after the pivot, so it cannot be compensated${err}`;
  if (r.status === 'compensating') return `waiting on the compensation of ${r.step} (attempt ${r.attempts})${err}`;
  return `waiting on ${r.step} (attempt ${r.attempts})${err}`;
}

export async function render(el, { query }, stops) {
  const p = params(query);
  const older = p.older_than || '5m';
  const pick = select('older_than', [['1m', '1 minute'], ['5m', '5 minutes'], ['15m', '15 minutes'], ['1h', '1 hour'], ['6h', '6 hours']], older);
  pick.addEventListener('change', () => { location.hash = `#/attention?older_than=${encodeURIComponent(pick.value)}`; });
  const body = h('div', { 'aria-busy': 'true' });
  clear(el, h('h1', {}, 'Needs attention'),
    h('p.lead', {}, 'Failed sagas are stuck until an operator acts; running or compensating ones that have not moved for a while may be waiting on a service.'),
    h('form.inline', { onsubmit: e => e.preventDefault() }, field('Not moving for more than', pick)), body);

  async function load() {
    let a;
    try {
      a = await api('GET', `/v1/attention?older_than=${encodeURIComponent(older)}&limit=200`);
    } catch (e) { clear(body, failure(e)); return; }
    const failed = a.sagas.filter(r => r.status === 'failed').length;
    const o = a.oldest_stalled_seconds || {};
    const cards = h('div.cards', {},
      card('Stuck (failed)', a.counts.reduce((n, c) => n + c.failed, 0), 'bad'),
      card(`Not moving > ${older}`, a.counts.reduce((n, c) => n + c.stalled, 0), 'warn'),
      card('Oldest failed', age(o.failed), ''),
      card('Oldest running without progress', age(o.running), ''),
      card('Oldest compensating without progress', age(o.compensating), ''));
    const perDef = a.counts.length ? h('table.compact', {},
      h('caption', {}, 'By definition'),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Definition'), h('th', { scope: 'col' }, 'Failed'), h('th', { scope: 'col' }, 'Not moving'))),
      h('tbody', {}, a.counts.map(c => h('tr', {},
        h('th', { scope: 'row' }, h('a', { href: `#/sagas?definition=${encodeURIComponent(c.definition)}&status=failed` }, c.definition)),
        h('td.num', {}, c.failed), h('td.num', {}, c.stalled))))) : null;
    const list = a.sagas.length === 0
      ? h('p.good', {}, `Nothing needs attention: no failed saga, none idle for more than ${older}.`)
      : h('div.scroll', {}, h('table.list', { id: 'attention' },
        h('caption', {}, `${a.sagas.length} saga(s)${a.more ? ' (the first ones; more exist)' : ''}, failed first, the oldest first`),
        h('thead', {}, h('tr', {}, ['Saga', 'Definition', 'Status', 'Step', 'Attempts', 'Why', 'Since'].map(t => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, a.sagas.map(r => h('tr', { 'data-id': r.id },
          h('td', {}, sagaLink(r.id, r.id.slice(0, 8)), r.business_key ? h('div.sub', {}, r.business_key) : null),
          h('td', {}, `${r.name}@${r.version}`),
          h('td', {}, badge(r.status)),
          h('td', {}, r.step, h('div.sub', {}, r.step_status)),
          h('td.num', {}, r.attempts),
          h('td.why', {}, reason(r)),
          h('td', { title: r.since }, age(r.idle_seconds)))))));
    body.removeAttribute('aria-busy');
    clear(body, cards, perDef, list, failed ? h('p', {}, h('a', { href: '#/repair' }, 'Repair many at once'), ' (a dry run counts them first).') : null);
  }
  await load();
  every(5, load, stops);
}

function card(label, value, kind) {
  return h(`div.card${kind ? '.' + kind : ''}`, {}, h('div.value', {}, String(value)), h('div.label', {}, label));
}
