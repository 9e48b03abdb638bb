// services.js - Services: each participant service's circuit breaker
// and bulkhead as every sagad last reported it, and this sagad's
// counters: commands dispatched, replies and timeouts, the error rate
// since it started and over the last refresh.
import { api, h, clear, badge, every, failure } from './lib.js';

let previous = null;

export async function render(el, _route, stops) {
  const body = h('div');
  clear(el, h('h1', {}, 'Services'),
    h('p.lead', {}, 'A breaker opens when a service keeps failing: its commands wait instead of hammering it, and go out again once a probe succeeds. A bulkhead caps the commands in flight to one service.'),
    body);
  async function load() {
    let r;
    try { r = await api('GET', '/v1/services'); } catch (e) { clear(body, failure(e)); return; }
    const names = new Set([...r.health.map(x => x.service), ...Object.keys(r.counters)]);
    const rows = [...names].sort().map(name => {
      const inst = r.health.filter(x => x.service === name);
      const c = r.counters[name] || { dispatched: 0, ok: 0, failed: 0, retry: 0, timeouts: 0 };
      const worst = inst.some(x => x.breaker === 'open') ? 'open' : inst.some(x => x.breaker === 'half_open') ? 'half_open' : inst.length ? 'closed' : 'unknown';
      const bad = c.failed + c.retry + c.timeouts, all = c.ok + bad;
      const p = previous && previous[name];
      let recent = '-';
      if (p) {
        const db = bad - (p.failed + p.retry + p.timeouts), da = all - (p.ok + p.failed + p.retry + p.timeouts);
        recent = da > 0 ? `${Math.round((100 * db) / da)}% of ${da}` : 'no replies';
      }
      const flight = inst.reduce((n, x) => n + x.in_flight, 0);
      const cap = inst.reduce((n, x) => n + x.max_in_flight, 0);
      return h('tr', {},
        h('th', { scope: 'row' }, name),
        h('td', {}, badge(worst), inst.length > 1 ? h('div.sub', {}, inst.map(x => `${x.instance}: ${x.breaker}`).join(', ')) : null),
        h('td.num', {}, inst.reduce((n, x) => Math.max(n, x.consecutive_failures), 0)),
        h('td.num', {}, cap > 0 ? `${flight} / ${cap}` : `${flight} (no cap)`),
        h('td.num', {}, `${inst.reduce((n, x) => n + x.held_breaker, 0)} / ${inst.reduce((n, x) => n + x.held_bulkhead, 0)}`),
        h('td.num', {}, inst.reduce((n, x) => n + x.opened_total, 0)),
        h('td.num', {}, c.dispatched),
        h('td.num', {}, `${c.ok} / ${c.failed} / ${c.retry} / ${c.timeouts}`),
        h('td.num', {}, all ? `${Math.round((100 * bad) / all)}%` : '-'),
        h('td.num', {}, recent),
        h('td', {}, inst.length ? `${Math.max(...inst.map(x => x.reported_seconds_ago))} s ago` : 'not reported'));
    });
    previous = r.counters;
    clear(body, names.size === 0 ? h('p', {}, 'No service has had a command yet.') :
      h('div.scroll', {}, h('table.list', { id: 'services' },
        h('caption', {}, `Breakers and bulkheads from every sagad; counters from ${r.counters_from}.`),
        h('thead', {}, h('tr', {}, ['Service', 'Breaker', 'Failures in a row', 'In flight', 'Held: breaker / bulkhead', 'Opened', 'Commands', 'ok / failed / retry / timeouts', 'Errors', 'Last 5 s', 'Reported'].map(t => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, rows))));
  }
  previous = null;
  await load();
  every(5, load, stops);
}
