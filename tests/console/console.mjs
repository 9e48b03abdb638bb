// console.mjs - the console's browser test (run by
// tests/integration/test_console.sh, which starts sagad and makes the
// stuck sagas): Debian's headless chromium driven by playwright-core,
// never a browser Playwright downloads. Each check prints one line; the
// first failure throws, and the process exits 1.
import { createRequire } from 'node:module';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

const require = createRequire(join(process.env.NODE_PATH, 'x.js'));
const { chromium } = require('playwright-core');
const { BASE, OPS_TOKEN, READER_TOKEN, STUCK, OTHER, CART, SHOTS, PROFILE } = process.env;

const t0 = Date.now();
function ok(what) { console.log(`test_console: ok: ${what} (${Date.now() - t0} ms)`); }
function check(cond, what) { if (!cond) throw new Error(`FAIL: ${what}`); }

mkdirSync(SHOTS, { recursive: true });
rmSync(PROFILE, { recursive: true, force: true });
const ctx = await chromium.launchPersistentContext(PROFILE, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  viewport: { width: 1280, height: 860 },
});
const page = ctx.pages()[0] || await ctx.newPage();
page.setDefaultTimeout(20000);
const problems = [];
// The browser logs refused requests as errors: the login's first 401 and
// the forged requests' 403 are this test's own doing.
page.on('console', m => {
  if (m.type() === 'error' && !/status of (401|403) /.test(m.text())) problems.push(m.text());
});
page.on('pageerror', e => problems.push(String(e)));
// Nothing may be fetched from anywhere but sagad.
page.on('request', r => { if (!r.url().startsWith(BASE) && !r.url().startsWith('data:')) problems.push(`outside fetch: ${r.url()}`); });

const shot = async (name) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });

try {
  // ---- served with a CSP that forbids inline script
  const res = await page.goto(`${BASE}/`);
  const csp = res.headers()['content-security-policy'] || '';
  check(/script-src 'self'/.test(csp) && !/unsafe-inline/.test(csp), `CSP: ${csp}`);
  check(res.headers()['x-frame-options'] === 'DENY', 'X-Frame-Options');
  ok('/ is served by sagad with a CSP allowing its own scripts only (no inline), no framing');

  // ---- log in as the operator, from the keyboard
  await page.getByLabel('Token').waitFor();
  await shot('login');
  await page.getByLabel('Token').fill(OPS_TOKEN);
  await page.keyboard.press('Enter');
  await page.locator('#who').getByText('token:oncall-alice').waitFor();
  const cookies = await ctx.cookies(BASE);
  const c = cookies.find(x => x.name === 'saga_console');
  check(c && c.httpOnly && c.sameSite === 'Strict', `cookie: ${JSON.stringify(c)}`);
  check(await page.evaluate(() => document.cookie) === '', 'the page\'s script can read the cookie');
  ok('login with an operator token: an HttpOnly, SameSite=Strict cookie the page cannot read');

  // ---- needs attention: the stuck saga, with why
  const row = page.locator(`#attention tr[data-id="${STUCK}"]`);
  await row.waitFor();
  check((await row.innerText()).includes('reserve_credit'), 'the stuck row names its step');
  check((await row.innerText()).includes('failed'), 'the stuck row says failed');
  check(await page.locator(`#attention tr[data-id="${OTHER}"]`).count() === 1, 'the other stuck saga is listed');
  await shot('attention');
  ok('Needs attention lists both stuck sagas with their step, status and why');

  // ---- the saga: timeline with the failed step
  await row.getByRole('link').click();
  await page.locator('svg.timeline').waitFor();
  check(await page.locator('svg.timeline rect.tl-bad').count() >= 1, 'the timeline marks a failed attempt');
  check(await page.locator('svg.timeline .tl-compline').count() === 1, 'the timeline shows where compensation began');
  const steps = await page.locator('#steps').innerText();
  check(/reserve_credit/.test(steps) && /compensation_failed|failed/.test(steps), `steps: ${steps}`);
  check(/timeout|step_failed|compensation_failed/.test(await page.locator('#history').innerText()), 'history shows the failure');
  await shot('saga-stuck');
  ok('the saga page: a timeline marking the failed attempts and where compensation began; steps and history');

  // ---- retry it with a reason; the page follows it to the end
  await page.getByLabel('Action').selectOption('retry');
  await page.getByRole('button', { name: 'Repair' }).click();
  await page.getByText('A reason is required').waitFor();
  await page.getByLabel(/Reason/).fill('payment is back (INC-7)');
  await page.getByRole('button', { name: 'Repair' }).click();
  await page.locator('#repair-result').getByText('retry:').waitFor();
  await page.locator('#saga-status').getByText('compensated').waitFor({ timeout: 30000 });
  const hist = page.locator('#history tr.operator');
  await hist.first().waitFor();
  const line = await hist.first().innerText();
  check(line.includes('operator_retry') && line.includes('token:oncall-alice') && line.includes('payment is back (INC-7)'), `history: ${line}`);
  await shot('saga');
  ok('retry with a reason (none refused first): the page shows it compensated, the history names token:oncall-alice and why');

  // ---- CSRF: a POST without the token, or from another origin, is refused
  const noCsrf = await page.evaluate(async (id) => {
    const r = await fetch(`/v1/sagas/${id}/resolve`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"reason":"forged"}' });
    return [r.status, (await r.json()).code];
  }, OTHER);
  check(noCsrf[0] === 403 && noCsrf[1] === 'csrf', `no CSRF token: ${noCsrf}`);
  const csrf = (await (await page.request.get(`${BASE}/v1/session`)).json()).csrf;
  const cross = await page.request.post(`${BASE}/v1/sagas/${OTHER}/resolve`, {
    headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf, Origin: 'http://evil.example' },
    data: '{"reason":"forged"}',
  });
  check(cross.status() === 403 && (await cross.json()).code === 'csrf', `another origin: ${cross.status()}`);
  ok('with the session cookie, a POST without X-CSRF-Token is 403 csrf, and one from another origin too');

  // ---- bulk repair: a dry run counts first
  await page.goto(`${BASE}/#/repair`);
  await page.getByLabel('Definition').selectOption('credit');
  await page.getByRole('button', { name: 'Count them (dry run)' }).click();
  await page.locator('#dry-run').getByText('1 saga(s) match').waitFor();
  await page.getByLabel('Reason (required)').fill('payment is back (INC-7), the rest');
  await shot('repair');
  await page.getByRole('button', { name: /retry 1 saga/ }).click();
  await page.locator('#bulk-result').getByText('1 of 1 repaired').waitFor();
  ok('bulk repair: the dry run counts 1, then 1 of 1 repaired');

  // ---- sagas: search and live counts
  await page.goto(`${BASE}/#/sagas?definition=credit`);
  await page.locator('#sagas').waitFor();
  await page.locator('.counts').getByText('credit:').waitFor();
  check((await page.locator('#sagas').innerText()).includes(STUCK.slice(0, 8)), 'the search lists the saga');
  await page.goto(`${BASE}/#/sagas`);
  await page.getByLabel('Business key').fill('order-102');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.waitForFunction(() => document.querySelectorAll('#sagas tbody tr').length === 1);
  await page.goto(`${BASE}/#/sagas`);
  await page.locator('#sagas').waitFor();
  await shot('sagas');
  ok('Sagas: search by definition and by business key, counts by status');

  // ---- a fan-out and a child saga, linked both ways
  await page.goto(`${BASE}/#/saga/${CART}`);
  await page.locator('#steps').getByText('3 elements: 3 succeeded').waitFor();
  await shot('saga-cart');
  await page.locator('#steps .child a').click();
  await page.locator('h1').getByText(/Saga/).waitFor();
  await page.getByText('started this saga').waitFor();
  check((await page.locator('dl.facts').innerText()).includes(CART), 'the child names its parent');
  check((await page.locator('dl.facts').innerText()).includes('shipping@'), 'the child is a shipping saga');
  await page.goto(`${BASE}/#/definitions/cart`);
  await page.locator('svg.drawing').waitFor();
  const drawn = await page.locator('svg.drawing').innerHTML();
  check(drawn.includes('child saga shipping') && drawn.includes('for each ${input.lines}'), 'the drawing shows the child step and the fan-out');
  ok('a cart: its fan-out step\'s elements by status, its child saga linked, the child naming its parent; drawn with its fan-out and child');

  // ---- services
  await page.goto(`${BASE}/#/services`);
  await page.locator('#services').getByText('payment').waitFor();
  await shot('services');
  ok('Services: breakers, bulkheads and counters per service');

  // ---- definitions: drawing and diff
  await page.goto(`${BASE}/#/definitions/order_parallel`);
  await page.locator('svg.drawing').waitFor();
  check(await page.locator('svg.drawing .dr-group').count() === 1, 'the parallel group is drawn');
  check(await page.locator('svg.drawing .dr-comp').count() >= 3, 'compensations are drawn');
  await shot('definition');
  await page.goto(`${BASE}/#/definitions/credit`);
  await page.locator('#diff').waitFor();
  check(/-\s+"timeout": "1s"/.test(await page.locator('#diff').innerText()) &&
        /\+\s+"timeout": "2s"/.test(await page.locator('#diff').innerText()), 'the diff shows the changed timeout');
  await shot('definitions-diff');
  ok('Definitions: the drawing (parallel group, compensations), the diff between versions 1 and 2');

  // ---- keyboard: skip link, then the pages' links
  await page.goto(`${BASE}/#/attention`);
  await page.reload();
  await page.locator('#attention, p.good').first().waitFor();
  await page.keyboard.press('Tab');
  check(await page.evaluate(() => document.activeElement.className) === 'skip', 'the first Tab reaches the skip link');
  await page.keyboard.press('Tab');
  await page.keyboard.press('Tab');
  check(await page.evaluate(() => document.activeElement.getAttribute('href')) === '#/sagas', 'Tab reaches the Sagas link');
  await page.keyboard.press('Enter');
  await page.locator('#sagas').waitFor();
  ok('keyboard: a skip link first, the pages reached with Tab and Enter');

  // ---- a narrow window
  await page.setViewportSize({ width: 380, height: 800 });
  await page.goto(`${BASE}/#/saga/${STUCK}`);
  await page.locator('svg.timeline').waitFor();
  const wide = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(wide <= 1, `the page is ${wide} px wider than a 380 px window`);
  await shot('saga-narrow');
  await page.setViewportSize({ width: 1280, height: 860 });
  ok('a 380 px window: no sideways scrolling of the page');

  // ---- the reader: no repair buttons, and the API refuses anyway
  await page.locator('#who').getByRole('button', { name: 'Log out' }).click();
  await page.getByLabel('Token').fill(READER_TOKEN);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.locator('#who').getByText('token:support-bob').waitFor();
  await page.goto(`${BASE}/#/saga/${STUCK}`);
  await page.locator('svg.timeline').waitFor();
  await page.getByText('may read but not repair').waitFor();
  check(await page.getByRole('button', { name: 'Repair' }).count() === 0, 'a reader sees a Repair button');
  await page.goto(`${BASE}/#/repair`);
  await page.getByText('may read but not repair').waitFor();
  check(await page.getByRole('button', { name: /Count them|Repair them/ }).count() === 0, 'a reader sees bulk repair buttons');
  const forged = await page.evaluate(async (id) => {
    const who = await (await fetch('/v1/session')).json();
    const r = await fetch(`/v1/sagas/${id}/resolve`, { method: 'POST', headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': who.csrf }, body: '{"reason":"forged"}' });
    return [r.status, (await r.json()).code];
  }, STUCK);
  check(forged[0] === 403 && forged[1] === 'forbidden', `a reader's forged repair: ${forged}`);
  ok('a reader: no repair buttons; a forged POST with its own CSRF token is 403 forbidden');

  check(problems.length === 0, `console errors or outside fetches: ${problems.join(' | ')}`);
  ok('no console error, no CSP violation, nothing fetched from outside sagad');
} catch (e) {
  await shot('failure').catch(() => {});
  console.error(`test_console: ${e.message}`);
  if (problems.length) console.error(`browser said: ${problems.join(' | ')}`);
  await ctx.close();
  process.exit(1);
}
await ctx.close();
