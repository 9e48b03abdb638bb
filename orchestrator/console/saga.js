// saga.js - one saga: what it is, a timeline of every attempt of its
// steps and compensations (when each ran, how long, where it failed,
// where compensation began, operator actions), its steps' inputs and
// outputs and errors, the history with who did what and why, and for an
// operator the repairs (retry, compensate, skip, resolve; a reason is
// required and goes into the history).
import { api, h, s, clear, badge, when, ms, json, errorText, field, select, every, failure, session, say, Problem, sagaLink } from './lib.js';

const ENDED = ['completed', 'compensated', 'resolved', 'rejected', 'cancelled'];

export async function render(el, { args }, stops) {
  const id = args[0];
  const head = h('div');
  const timeline = h('section', { 'aria-labelledby': 'tl-h' });
  const steps = h('section');
  const history = h('section');
  const repairBox = h('section.repair', { 'aria-labelledby': 'repair-h' });
  clear(el, head, timeline, repairBox, steps, history);
  let last = null;

  async function load() {
    const [saga, events] = await Promise.all([
      api('GET', `/v1/sagas/${encodeURIComponent(id)}`),
      api('GET', `/v1/sagas/${encodeURIComponent(id)}/history`).catch(() => []),
    ]);
    const changed = !last || last.status !== saga.status || last.n !== events.length;
    last = { status: saga.status, n: events.length };
    if (!changed) return saga;
    header(head, saga);
    clear(timeline, h('h2', { id: 'tl-h' }, 'Timeline'), drawTimeline(saga, events));
    clear(steps, h('h2', {}, 'Steps'), stepTable(saga), h('h3', {}, 'Input'), json(saga.input));
    clear(history, h('h2', {}, 'History'), historyTable(events));
    return saga;
  }
  const saga = await load();
  repairPanel(repairBox, saga, load, stops);
  every(ENDED.includes(saga.status) ? 30 : 3, () => load().catch(() => {}), stops);
}

function header(el, saga) {
  const trace = saga.trace_id
    ? (session.traceUrl
      ? h('a', { href: session.traceUrl.replace('{trace_id}', encodeURIComponent(saga.trace_id)), rel: 'noopener noreferrer', target: '_blank' }, saga.trace_id)
      : h('code', {}, saga.trace_id))
    : '-';
  clear(el, h('h1', {}, 'Saga ', h('code.id', {}, saga.id)),
    h('dl.facts', {},
      h('dt', {}, 'Status'), h('dd', { id: 'saga-status' }, badge(saga.status)),
      h('dt', {}, 'Definition'), h('dd', {}, h('a', { href: `#/definitions/${encodeURIComponent(saga.name)}` }, `${saga.name}@${saga.version ?? '-'}`)),
      h('dt', {}, 'At step'), h('dd', {}, stepName(saga, saga.step)),
      h('dt', {}, 'Business key'), h('dd', {}, saga.business_key || '-'),
      saga.parent ? [h('dt', {}, 'Parent'), h('dd', {},
        sagaLink(saga.parent.id),
        ` (its step ${saga.parent.step} started this saga)`)] : null,
      h('dt', {}, 'Created'), h('dd', {}, when(saga.created_at)),
      h('dt', {}, 'Updated'), h('dd', {}, when(saga.updated_at)),
      h('dt', {}, 'Trace'), h('dd', {}, trace),
      saga.error ? [h('dt', {}, 'Error'), h('dd', {}, errorText(saga.error))] : null));
}

function stepName(saga, i) {
  const st = (saga.steps || []).find(x => x.index === i);
  return st ? `${st.name} (${i})` : (i ?? '-');
}

function stepTable(saga) {
  return h('div.scroll', {}, h('table.list', { id: 'steps' },
    h('thead', {}, h('tr', {}, ['#', 'Step', 'Status', 'Attempts', 'Started', 'Finished', 'Output', 'Error'].map(t => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, (saga.steps || []).map(st => h('tr', { class: st.error ? 'has-error' : null },
      h('td.num', {}, st.index), h('th', { scope: 'row' }, st.name), h('td', {}, badge(st.status)),
      h('td.num', {}, st.attempts), h('td', {}, when(st.started_at)), h('td', {}, when(st.finished_at)),
      h('td', {}, stepOutput(st)), h('td.err', {}, errorText(st.error)))))));
}

// A fan-out step's elements by status (its output, the list, can be
// long); a child step's child saga, linked; else the output.
function stepOutput(st) {
  const parts = [];
  if (st.elements) {
    const total = Object.values(st.elements).reduce((a, b) => a + b, 0);
    parts.push(h('p.elements', {}, `${total} elements: ` +
      Object.entries(st.elements).map(([k, v]) => `${v} ${k}`).join(', ')));
  }
  if (st.child) {
    parts.push(h('p.child', {}, 'child saga ',
      sagaLink(st.child.id),
      ` (${st.child.definition}): `, badge(st.child.status)));
  }
  if (parts.length === 0 && st.output) parts.push(json(st.output));
  return parts;
}

function historyTable(events) {
  return h('div.scroll', {}, h('table.list', { id: 'history' },
    h('thead', {}, h('tr', {}, ['#', 'At', 'Event', 'Step', 'Attempt', 'By', 'Detail'].map(t => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, events.map(e => h('tr', { class: e.kind.startsWith('operator_') ? 'operator' : null },
      h('td.num', {}, e.seq), h('td', { title: e.at }, when(e.at)),
      h('td', {}, e.kind), h('td', {}, e.step_name ? `${e.step_name}${e.phase === 'compensate' ? ' (undo)' : ''}` : ''),
      h('td.num', {}, e.attempt ?? ''), h('td.actor', {}, e.actor),
      h('td', {}, e.detail ? h('code.detail', {}, JSON.stringify(e.detail)) : ''))))));
}

// The Gantt-like picture: one row per step, a bar per attempt (invoke
// and compensate), a line where compensation began, a mark per operator
// action. The tables below say the same in text.
export function drawTimeline(saga, events) {
  const times = events.map(e => Date.parse(e.at)).filter(t => !isNaN(t));
  if (times.length === 0) return h('p', {}, 'No events yet.');
  const t0 = Math.min(...times);
  const running = !ENDED.includes(saga.status) && saga.status !== 'failed';
  const t1 = Math.max(...times, running ? Date.now() : 0);
  const span = Math.max(t1 - t0, 1);
  const names = (saga.steps || []).map(st => st.name);
  const rowOf = {};
  names.forEach((n, i) => { rowOf[n] = i; });
  const attempts = new Map();
  let compBegan = null;
  const operator = [];
  for (const e of events) {
    const t = Date.parse(e.at);
    if (e.kind.startsWith('operator_')) operator.push(e);
    if (compBegan === null && (e.kind === 'compensating' || e.kind === 'compensation_started' || e.phase === 'compensate')) compBegan = t;
    // A bar is an attempt: the saga's own events (saga_failed names the
    // step too) and the operators' are not part of one.
    if (e.step === null || e.step === undefined || e.attempt === null || e.attempt === undefined || !e.phase) continue;
    if (/^(saga_|operator_)/.test(e.kind) || e.kind === 'compensation_started') continue;
    const k = `${e.step}|${e.phase}|${e.attempt}`;
    const a = attempts.get(k) || { step: e.step, name: e.step_name, phase: e.phase, attempt: e.attempt, start: t, end: t, kinds: [] };
    a.start = Math.min(a.start, t); a.end = Math.max(a.end, t); a.kinds.push(e.kind);
    attempts.set(k, a);
  }
  const W = 900, left = 150, right = 20, rowH = 26, top = 30;
  const H = top + Math.max(names.length, 1) * rowH + 24;
  const x = t => left + ((t - t0) / span) * (W - left - right);
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'timeline', role: 'img', 'aria-label': `Timeline of ${attempts.size} attempt(s) over ${ms(span)}` });
  names.forEach((n, i) => {
    svg.append(s('text', { x: 6, y: top + i * rowH + 17, class: 'tl-name' }, n));
    svg.append(s('line', { x1: left, x2: W - right, y1: top + i * rowH + rowH - 1, y2: top + i * rowH + rowH - 1, class: 'tl-grid' }));
  });
  for (let k = 0; k <= 4; k++) {
    const t = t0 + (span * k) / 4;
    svg.append(s('text', { x: x(t), y: 14, class: 'tl-axis', 'text-anchor': k === 0 ? 'start' : k === 4 ? 'end' : 'middle' }, `+${ms(t - t0)}`));
  }
  for (const a of attempts.values()) {
    const row = rowOf[a.name] ?? a.step;
    const lastKind = a.kinds[a.kinds.length - 1];
    const bad = /failed|timeout|retry|unknown|gave_up/.test(lastKind);
    const open = a.kinds.length === 1 && /dispatched|held/.test(lastKind);
    const end = open ? t1 : a.end;
    const cls = `tl-bar ${a.phase === 'compensate' ? 'tl-comp' : 'tl-inv'}${bad ? ' tl-bad' : ''}${open ? ' tl-open' : ''}`;
    const y = top + row * rowH + (a.phase === 'compensate' ? 13 : 3);
    svg.append(s('rect', { x: x(a.start), y, width: Math.max(x(end) - x(a.start), 3), height: 10, rx: 2, class: cls },
      s('title', {}, `${a.name} ${a.phase === 'compensate' ? 'compensation' : 'action'}, attempt ${a.attempt}: ${ms(end - a.start)}${open ? ' so far' : ''}; ${a.kinds.join(' \u2192 ')}`)));
    if (bad) svg.append(s('text', { x: x(end) + 4, y: y + 9, class: 'tl-fail' }, '\u2715'));
  }
  if (compBegan !== null) {
    svg.append(s('line', { x1: x(compBegan), x2: x(compBegan), y1: 20, y2: H - 20, class: 'tl-compline' }));
    svg.append(s('text', { x: x(compBegan) + 3, y: H - 8, class: 'tl-note' }, 'compensation began'));
  }
  for (const e of operator) {
    const cx = x(Date.parse(e.at));
    svg.append(s('path', { d: `M${cx} 18 l5 6 l-5 6 l-5 -6 z`, class: 'tl-op' },
      s('title', {}, `${e.kind} by ${e.actor}: ${(e.detail && e.detail.reason) || ''}`)));
  }
  const legend = h('p.legend', {}, h('span.key.inv', {}), 'action ', h('span.key.comp', {}), 'compensation ',
    h('span.key.bad', {}), 'failed, timed out or retried ', h('span.key.op', {}), 'operator action');
  return h('div.tl-wrap', {}, svg, legend);
}

function repairPanel(el, saga, load, stops) {
  if (!session.mayRepair) {
    clear(el, h('h2', { id: 'repair-h' }, 'Repair'),
      h('p.note', {}, `Your token's role (${session.role}) may read but not repair: ask an operator.`));
    return;
  }
  if (['completed', 'compensated', 'resolved'].includes(saga.status)) {
    // An ended saga takes no repair (the API would refuse each with 409).
    clear(el, h('h2', { id: 'repair-h' }, 'Repair'),
      h('p.note', {}, `This saga has ended (${saga.status}): there is nothing to repair.`));
    return;
  }
  const action = select('action', [['retry', 'Retry the outstanding step or compensation'], ['compensate', 'Compensate (undo what it did)'], ['skip', 'Skip the current step (mark it done)'], ['resolve', 'Resolve by hand (close a failed saga)']],
    saga.status === 'failed' ? 'retry' : 'compensate');
  const reason = h('textarea', { name: 'reason', 'aria-required': 'true', rows: 2, maxlength: 1000, placeholder: 'payment is back (INC-7)' });
  const behalf = h('input', { name: 'on_behalf_of', maxlength: 200, placeholder: 'ticket 99' });
  const cur = (saga.steps || []).find(x => x.index === saga.step);
  const skipStep = h('input', { name: 'step', value: cur ? cur.name : '' });
  const skipOut = h('textarea', { name: 'output', rows: 2, placeholder: '{"order_id": "..."}' });
  const skipBox = h('div.skip', { hidden: true }, field('Step to mark done', skipStep), field('Its output (JSON object, optional)', skipOut));
  action.addEventListener('change', () => { skipBox.hidden = action.value !== 'skip'; });
  const out = h('div', { 'aria-live': 'polite', id: 'repair-result' });
  const submit = h('button', { type: 'submit' }, 'Repair');
  const form = h('form.repair-form', {
    onsubmit: async (ev) => {
      ev.preventDefault();
      if (!reason.value.trim()) { clear(out, h('p.problem', { role: 'alert' }, 'A reason is required: it goes into the history.')); reason.focus(); return; }
      const body = { reason: reason.value.trim() };
      if (behalf.value.trim()) body.on_behalf_of = behalf.value.trim();
      if (action.value === 'skip') {
        body.step = skipStep.value.trim();
        if (skipOut.value.trim()) {
          try { body.output = JSON.parse(skipOut.value); } catch (e) { clear(out, h('p.problem', { role: 'alert' }, `The output is not JSON: ${e.message}`)); return; }
        }
      }
      submit.disabled = true;
      try {
        const r = await api('POST', `/v1/sagas/${encodeURIComponent(saga.id)}/${action.value}`, body);
        clear(out, h('p.good', {}, `${action.value}: the saga is now ${r.status} at ${r.step} (${r.step_status}); ${r.commands_sent} command(s) sent.`));
        reason.value = '';
        say(`${action.value} done`);
        // Follow it closely until it settles.
        let n = 0;
        const t = setInterval(async () => {
          n++;
          const sg = await load().catch(() => null);
          if (n > 60 || (sg && (ENDED.includes(sg.status) || sg.status === 'failed'))) clearInterval(t);
        }, 1000);
        stops.push(() => clearInterval(t));
      } catch (e) {
        clear(out, h('p.problem', { role: 'alert' }, e instanceof Problem ? `${e.status} ${e.code || ''}: ${e.message}` : String(e)));
      } finally {
        submit.disabled = false;
      }
    },
  }, field('Action', action), field('Reason (required, kept in the history)', reason), field('On behalf of (optional)', behalf), skipBox, submit, out);
  clear(el, h('h2', { id: 'repair-h' }, 'Repair'),
    h('p.note', {}, `As ${session.name}: the history will name this token.`), form);
}
