// definitions.js - Definitions: each one's versions, a drawing of its
// steps (order, parallel groups, the pivot, compensations, waits, fan-outs,
// child sagas and conditions) and the difference between two versions,
// line by line.
import { api, h, s, clear, when, select, field, failure } from './lib.js';

export async function render(el, { args }) {
  if (!args[0]) return list(el);
  return one(el, args[0]);
}

async function list(el) {
  const defs = await api('GET', '/v1/definitions');
  clear(el, h('h1', {}, 'Definitions'), defs.length === 0 ? h('p', {}, 'No definition is deployed.') :
    h('div.scroll', {}, h('table.list', { id: 'definitions' },
      h('thead', {}, h('tr', {}, ['Name', 'Latest version', 'Versions', 'Deployed', 'Active sagas'].map(t => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, defs.map(d => h('tr', {},
        h('th', { scope: 'row' }, h('a', { href: `#/definitions/${encodeURIComponent(d.name)}` }, d.name)),
        h('td.num', {}, d.latest), h('td.num', {}, d.versions), h('td', {}, when(d.deployed_at)), h('td.num', {}, d.active_sagas)))))));
}

async function one(el, name) {
  const latest = await api('GET', `/v1/definitions/${encodeURIComponent(name)}`);
  const versions = latest.versions.map(String);
  const pick = select('version', versions.map(v => [v, `version ${v}`]), String(latest.version));
  const from = select('from', versions.map(v => [v, `version ${v}`]), versions.length > 1 ? versions[versions.length - 2] : versions[0]);
  const to = select('to', versions.map(v => [v, `version ${v}`]), String(latest.version));
  const drawing = h('div');
  const diffOut = h('div');
  async function show(v) {
    const d = v === String(latest.version) ? latest : await api('GET', `/v1/definitions/${encodeURIComponent(name)}/versions/${v}`);
    clear(drawing, h('p.sub', {}, `Version ${d.version}, deployed ${when(d.deployed_at)}, digest `, h('code', {}, d.digest.slice(0, 16))),
      d.definition.description ? h('p', {}, d.definition.description) : null, draw(d.definition));
  }
  async function diff() {
    try {
      const [a, b] = await Promise.all([from.value, to.value].map(v => api('GET', `/v1/definitions/${encodeURIComponent(name)}/versions/${v}`)));
      clear(diffOut, diffTable(canonical(a.definition), canonical(b.definition), a.version, b.version));
    } catch (e) { clear(diffOut, failure(e)); }
  }
  pick.addEventListener('change', () => show(pick.value).catch(e => clear(drawing, failure(e))));
  clear(el, h('h1', {}, name), h('p', {}, h('a', { href: '#/definitions' }, 'All definitions'), ' \u00b7 ',
    h('a', { href: `#/sagas?definition=${encodeURIComponent(name)}` }, 'its sagas')),
  h('form.inline', { onsubmit: e => e.preventDefault() }, field('Show', pick)), drawing,
  h('h2', {}, 'Changes between versions'),
  h('form.inline', { onsubmit: e => { e.preventDefault(); diff(); } }, field('From', from), field('To', to),
    h('div.field', {}, h('span', {}, '\u00a0'), h('button', { type: 'submit' }, 'Compare'))), diffOut);
  await show(String(latest.version));
  if (versions.length > 1) await diff();
  else clear(diffOut, h('p.sub', {}, 'Only one version is deployed.'));
}

// Adjacent steps with the same group run together: one column each.
function stages(steps) {
  const out = [];
  for (const st of steps) {
    const prev = out[out.length - 1];
    if (st.group && prev && prev.group === st.group) prev.steps.push(st);
    else out.push({ group: st.group || null, steps: [st] });
  }
  return out;
}

export function draw(def) {
  const st = stages(def.steps || []);
  const BW = 170, BH = 58, CH = 34, GAP = 44, PAD = 16;
  const rows = Math.max(...st.map(x => x.steps.length), 1);
  const W = PAD * 2 + st.length * BW + (st.length - 1) * GAP;
  const H = PAD * 2 + 18 + rows * (BH + CH + 18) + 30;
  const pivotAt = (def.steps || []).findIndex(x => x.pivot);
  let idx = 0;
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'drawing', role: 'img', 'aria-label': `${def.name}: ${(def.steps || []).map(x => x.name).join(', then ')}` },
    s('defs', {}, s('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' },
      s('path', { d: 'M0 0 L10 5 L0 10 z', class: 'dr-arrowhead' }))));
  st.forEach((stage, c) => {
    const x = PAD + c * (BW + GAP);
    if (stage.group) {
      svg.append(s('rect', { x: x - 6, y: PAD, width: BW + 12, height: stage.steps.length * (BH + CH + 18) + 14, rx: 8, class: 'dr-group' }));
      svg.append(s('text', { x: x, y: PAD + 12, class: 'dr-small' }, `parallel: ${stage.group}`));
    }
    stage.steps.forEach((step, r) => {
      const y = PAD + 18 + r * (BH + CH + 18);
      const i = idx++;
      const after = pivotAt >= 0 && i > pivotAt;
      const cls = `dr-step${step.pivot ? ' dr-pivot' : ''}${after ? ' dr-forward' : ''}${step.wait ? ' dr-wait' : ''}`;
      const g = s('g', {}, s('title', {}, JSON.stringify(step, null, 1)));
      g.append(s('rect', { x, y, width: BW, height: BH, rx: 6, class: cls }));
      g.append(s('text', { x: x + 8, y: y + 18, class: 'dr-name' }, clip(step.name, 22)));
      g.append(s('text', { x: x + 8, y: y + 34, class: 'dr-small' },
        clip(step.wait ? `waits for signal ${step.wait.signal}`
          : step.child ? `child saga ${step.child}` : `${step.service}.${step.action}`, 28)));
      const tags = [step.pivot ? 'pivot' : null, after ? 'forward only' : null,
        step.for_each ? `for each ${step.for_each}` : null, step.when ? `when ${step.when}` : null].filter(Boolean).join(' \u00b7 ');
      if (tags) g.append(s('text', { x: x + 8, y: y + 50, class: 'dr-tag' }, clip(tags, 30)));
      if (step.child && !after) {
        /* Undone by undoing its child. */
        g.append(s('rect', { x: x + 10, y: y + BH + 12, width: BW - 20, height: CH - 8, rx: 5, class: 'dr-comp' }));
        g.append(s('text', { x: x + 18, y: y + BH + 30, class: 'dr-small' }, clip(`\u21a9 undo ${step.child}`, 26)));
        g.append(s('line', { x1: x + BW / 2, x2: x + BW / 2, y1: y + BH, y2: y + BH + 12, class: 'dr-link' }));
      }
      if (step.compensation) {
        g.append(s('rect', { x: x + 10, y: y + BH + 12, width: BW - 20, height: CH - 8, rx: 5, class: 'dr-comp' }));
        g.append(s('text', { x: x + 18, y: y + BH + 30, class: 'dr-small' }, clip(`\u21a9 ${step.service}.${step.compensation}`, 26)));
        g.append(s('line', { x1: x + BW / 2, x2: x + BW / 2, y1: y + BH, y2: y + BH + 12, class: 'dr-link' }));
      }
      svg.append(g);
    });
    if (c > 0) {
      const y = PAD + 18 + BH / 2;
      svg.append(s('line', { x1: x - GAP + 2, x2: x - 4, y1: y, y2: y, class: 'dr-flow', 'marker-end': 'url(#arrow)' }));
    }
  });
  if (st.length > 1) {
    const y = H - 18;
    svg.append(s('line', { x1: W - PAD, x2: PAD, y1: y, y2: y, class: 'dr-back', 'marker-end': 'url(#arrow)' }));
    svg.append(s('text', { x: W / 2, y: y - 5, class: 'dr-small', 'text-anchor': 'middle' },
      pivotAt >= 0 ? 'on failure before the pivot: compensations run right to left' : 'on failure: compensations run right to left'));
  }
  return h('div.scroll', {}, svg);
}

function clip(t, n) {
  t = String(t);
  return t.length > n ? `${t.slice(0, n - 1)}\u2026` : t;
}

// Keys sorted, two-space indent: equal definitions print equal.
export function canonical(v) {
  const sort = x => Array.isArray(x) ? x.map(sort)
    : x && typeof x === 'object' ? Object.fromEntries(Object.keys(x).sort().map(k => [k, sort(x[k])])) : x;
  return JSON.stringify(sort(v), null, 2).split('\n');
}

// A line diff by longest common subsequence (definitions are short).
export function diffLines(a, b) {
  const n = a.length, m = b.length;
  const L = Array.from({ length: n + 1 }, () => new Int32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--)
    L[i][j] = a[i] === b[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
  const out = [];
  let i = 0, j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) { out.push([' ', a[i]]); i++; j++; }
    else if (L[i + 1][j] >= L[i][j + 1]) out.push(['-', a[i++]]);
    else out.push(['+', b[j++]]);
  }
  while (i < n) out.push(['-', a[i++]]);
  while (j < m) out.push(['+', b[j++]]);
  return out;
}

function diffTable(a, b, va, vb) {
  const d = diffLines(a, b);
  if (!d.some(([k]) => k !== ' ')) return h('p', {}, `Versions ${va} and ${vb} are the same.`);
  // Changed lines with three lines of context around them.
  const keep = d.map(([k]) => k !== ' ');
  const show = d.map((_, i) => keep.slice(Math.max(0, i - 3), i + 4).some(Boolean));
  const lines = [];
  d.forEach(([k, t], i) => {
    if (show[i]) lines.push(h(`div.dl${k === '+' ? '.add' : k === '-' ? '.del' : ''}`, {}, `${k} ${t}`));
    else if (show[i - 1]) lines.push(h('div.dl.gap', {}, '\u22ef'));
  });
  return h('div', { id: 'diff' }, h('p.sub', {}, `- version ${va}, + version ${vb}`), h('pre.diff', {}, lines));
}
