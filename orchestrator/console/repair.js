// repair.js - Repair many: every saga a filter matches, retried,
// compensated or resolved with one reason; a dry run counts them first,
// and the repair is offered only for the filter just counted.
import { api, h, clear, sagaLink, field, select, session, failure, Problem } from './lib.js';

export async function render(el) {
  if (!session.mayRepair) {
    clear(el, h('h1', {}, 'Repair'), h('p.note', {}, `Your token's role (${session.role}) may read but not repair: ask an operator.`));
    return;
  }
  let defs = [];
  try { defs = await api('GET', '/v1/definitions'); } catch (_) { defs = []; }
  const action = select('action', [['retry', 'Retry'], ['compensate', 'Compensate'], ['resolve', 'Resolve by hand']], 'retry');
  const definition = select('definition', [['', 'any'], ...defs.map(d => d.name)], '');
  const status = select('status', [['failed', 'failed'], ['running', 'running'], ['compensating', 'compensating'], ['', 'any']], 'failed');
  const step = h('input', { name: 'step', placeholder: 'reserve_credit' });
  const key = h('input', { name: 'business_key' });
  const since = h('input', { name: 'since', placeholder: '2h' });
  const older = h('input', { name: 'older_than', placeholder: '10m' });
  const reason = h('textarea', { name: 'reason', rows: 2, maxlength: 1000, placeholder: 'payment is back (INC-7)' });
  const behalf = h('input', { name: 'on_behalf_of', maxlength: 200 });
  const out = h('div', { id: 'bulk-result', 'aria-live': 'polite' });
  const go = h('button.danger', { type: 'button', disabled: true }, 'Repair them');
  let counted = null;

  function filter() {
    const f = {};
    for (const [k, c] of [['definition', definition], ['status', status], ['step', step], ['business_key', key], ['since', since], ['older_than', older]])
      if (c.value.trim()) f[k] = c.value.trim();
    return f;
  }
  const same = () => counted && JSON.stringify(counted) === JSON.stringify({ a: action.value, f: filter() });
  for (const c of [action, definition, status, step, key, since, older])
    c.addEventListener('input', () => { go.disabled = !same(); });

  const dry = h('button', { type: 'submit' }, 'Count them (dry run)');
  const form = h('form.filters', {
    onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        const r = await api('POST', '/v1/repairs', { action: action.value, dry_run: true, filter: filter() });
        counted = { a: action.value, f: filter() };
        go.disabled = r.matched === 0;
        go.textContent = `${action.value} ${r.matched}${r.more ? '+' : ''} saga(s)`;
        clear(out, h('p', { id: 'dry-run' }, `${r.matched} saga(s) match${r.more ? ' (more than one call repairs: call again after)' : ''}.`),
          r.sample.length ? h('p', {}, 'For example: ', r.sample.map((id, i) => [i ? ', ' : '', sagaLink(id, id.slice(0, 8))])) : null);
      } catch (e) { counted = null; go.disabled = true; clear(out, failure(e)); }
    },
  }, field('Action', action), field('Definition', definition), field('Status', status), field('At step', step),
  field('Business key', key), field('Created since', since), field('Created before', older),
  h('div.field', {}, h('span', {}, '\u00a0'), dry));

  go.addEventListener('click', async () => {
    if (!same()) return;
    if (!reason.value.trim()) { clear(out, h('p.problem', { role: 'alert' }, 'A reason is required: it goes into each saga\'s history.')); reason.focus(); return; }
    go.disabled = true;
    const body = { action: action.value, reason: reason.value.trim(), filter: filter() };
    if (behalf.value.trim()) body.on_behalf_of = behalf.value.trim();
    try {
      const r = await api('POST', '/v1/repairs', body);
      clear(out, h('p.good', {}, `${r.repaired} of ${r.matched} repaired${r.more ? '; more match: count again' : ''}.`),
        r.refused.length ? h('ul', {}, r.refused.map(x => h('li', {}, sagaLink(x.id, x.id.slice(0, 8)), `: ${x.reason}`))) : null);
      counted = null;
    } catch (e) { clear(out, h('p.problem', { role: 'alert' }, e instanceof Problem ? e.message : String(e))); }
  });
  clear(el, h('h1', {}, 'Repair many'),
    h('p.lead', {}, 'Choose the sagas with a filter, count them, then repair them all with one reason. Each repair is recorded in its saga\'s history as one made alone, naming your token.'),
    form, h('div.bulk', {}, field('Reason (required)', reason), field('On behalf of (optional)', behalf), go), out);
}
