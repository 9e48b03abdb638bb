// console_firefox.mjs - the console in Firefox (run by
// tests/integration/test_console_firefox.sh, which starts sagad and makes
// the stuck saga): Debian's firefox-esr, headless, driven over WebDriver
// BiDi (which Firefox speaks itself, no geckodriver) by puppeteer-core,
// never a browser puppeteer downloads. A shorter pass than Chromium's
// (tests/console/console.mjs): login, Needs attention, the saga's
// timeline, a retry with a reason, a definition's drawing, a 380 px
// window, a reader. Each check prints one line; the first failure
// throws, and the process exits 1.
//
// Firefox reaches nothing but this machine: MOZ_DISABLE_NONLOCAL_CONNECTIONS
// (Firefox's own switch for its test harness) makes any connection to a
// non-loopback address fatal, every http(s) request but the page's goes
// to a proxy here that answers none and records what was asked
// (the test fails on any), and the profile's prefs turn off updates,
// telemetry, remote settings, safe browsing, captive-portal and
// connectivity checks, DNS over HTTPS and prefetching.
import { createRequire } from 'node:module';
import { mkdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';

const require = createRequire(join(process.env.NODE_PATH, 'x.js'));
const puppeteer = require('puppeteer-core');
const { BASE, OPS_TOKEN, READER_TOKEN, STUCK, SHOTS, PROFILE } = process.env;
const FIREFOX = process.env.FIREFOX || '/usr/bin/firefox-esr';

const t0 = Date.now();
function ok(what) { console.log(`test_console_firefox: ok: ${what} (${Date.now() - t0} ms)`); }
function check(cond, what) { if (!cond) throw new Error(`FAIL: ${what}`); }

// The proxy that answers nothing: what Firefox tried to reach besides
// sagad (sagad's loopback address is not proxied).
const outside = [];
const sink = net.createServer(c => {
  c.on('error', () => {});
  c.once('data', d => { outside.push(String(d).split('\r\n')[0]); c.destroy(); });
});
await new Promise(r => sink.listen(0, '127.0.0.1', r));
const sinkPort = sink.address().port;

mkdirSync(SHOTS, { recursive: true });
rmSync(PROFILE, { recursive: true, force: true });
const browser = await puppeteer.launch({
  browser: 'firefox',
  executablePath: FIREFOX,
  headless: true,
  userDataDir: PROFILE, // fresh: puppeteer writes its prefs (and ours) into user.js
  env: { ...process.env, MOZ_DISABLE_NONLOCAL_CONNECTIONS: '1', MOZ_CRASHREPORTER_DISABLE: '1' },
  defaultViewport: { width: 1280, height: 860 },
  extraPrefsFirefox: {
    'network.proxy.type': 1,
    'network.proxy.http': '127.0.0.1', 'network.proxy.http_port': sinkPort,
    'network.proxy.ssl': '127.0.0.1', 'network.proxy.ssl_port': sinkPort,
    'network.proxy.no_proxies_on': '', // loopback is never proxied anyway
    // Remote settings (blocklists, certificates' lists...): none. The
    // server may be overridden under MOZ_DISABLE_NONLOCAL_CONNECTIONS,
    // and this one means "skip all remote activity".
    'services.settings.server': 'data:,#remote-settings-dummy/v1',
    'app.update.auto': false,
    'app.update.checkInstallTime': false,
    'app.normandy.enabled': false,
    'toolkit.telemetry.enabled': false,
    'toolkit.telemetry.unified': false,
    'toolkit.telemetry.archive.enabled': false,
    'toolkit.telemetry.server': '',
    'datareporting.healthreport.uploadEnabled': false,
    'datareporting.policy.dataSubmissionEnabled': false,
    'browser.ping-centre.telemetry': false,
    'browser.safebrowsing.update.enabled': false,
    'extensions.blocklist.enabled': false,
    'extensions.systemAddon.update.enabled': false,
    'browser.region.update.enabled': false,
    'browser.region.network.url': '',
    'geo.provider.network.url': '',
    'network.captive-portal-service.enabled': false,
    'network.connectivity-service.enabled': false,
    'network.trr.mode': 5,
    'network.dns.disablePrefetch': true,
    'network.prefetch-next': false,
    'media.gmp-gmpopenh264.enabled': false,
  },
});
const version = await browser.version();
const [page] = await browser.pages();
await page.setViewport({ width: 1280, height: 860 }); // the first tab is not given defaultViewport
page.setDefaultTimeout(20000);
const problems = [];
page.on('console', m => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
page.on('pageerror', e => problems.push(`page error: ${e}`));
page.on('request', r => {
  if (!r.url().startsWith(BASE) && !r.url().startsWith('data:') && r.url() !== 'about:blank') problems.push(`outside fetch: ${r.url()}`);
});
// A CSP violation is an event in the page; report it as a console error.
await page.evaluateOnNewDocument(() => {
  document.addEventListener('securitypolicyviolation',
    e => console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || '(inline)'}`));
});

const shot = async (name) => page.screenshot({ path: join(SHOTS, `ff-${name}.png`), fullPage: true });
const text = async (sel) => page.$eval(sel, e => e.textContent);
// Until an element matching sel has text (a string or a RegExp source).
const waitText = (sel, want, timeout) => page.waitForFunction((s, w) =>
  [...document.querySelectorAll(s)].some(e => new RegExp(w).test(e.textContent)),
{ timeout, polling: 100 }, sel, want instanceof RegExp ? want.source : want.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
// The laid-out size of the first element matching sel.
const size = (sel) => page.$eval(sel, e => { const r = e.getBoundingClientRect(); return [r.width, r.height]; });

try {
  ok(`${version} (${FIREFOX}), headless, over WebDriver BiDi; puppeteer-core ${require('puppeteer-core/package.json').version}`);

  // ---- served with its CSP, which Firefox enforces
  const res = await page.goto(`${BASE}/`);
  const csp = res.headers()['content-security-policy'] || '';
  check(/script-src 'self'/.test(csp) && !/unsafe-inline/.test(csp), `CSP: ${csp}`);
  await page.waitForSelector('#token');
  await page.evaluate(() => {
    const el = document.createElement('script');
    el.textContent = 'window.inlineRan = true';
    document.head.append(el);
  });
  await new Promise(r => setTimeout(r, 200));
  check(await page.evaluate(() => window.inlineRan) === undefined, 'an inline script ran');
  // Seen twice: the page's securitypolicyviolation event, and Firefox's
  // own error (a page error over BiDi).
  check(problems.some(p => /^console: CSP violation: script-src/.test(p)) &&
        problems.some(p => /^page error: .*Content-Security-Policy/.test(p)) &&
        problems.every(p => /CSP violation|Content-Security-Policy/.test(p)), `the CSP violation was not seen: ${problems.join(' | ')}`);
  problems.length = 0;
  ok('/ with its CSP: Firefox refuses an inline script, and the test sees the violation (event and error)');

  // ---- log in as the operator, from the keyboard
  await shot('login');
  await page.type('#token', OPS_TOKEN);
  await page.keyboard.press('Enter');
  await waitText('#who', 'token:oncall-alice');
  const c = (await page.cookies(BASE)).find(x => x.name === 'saga_console');
  check(c && c.httpOnly && c.sameSite === 'Strict', `cookie: ${JSON.stringify(c)}`);
  check(await page.evaluate(() => document.cookie) === '', 'the page\'s script can read the cookie');
  ok('login with an operator token: an HttpOnly, SameSite=Strict cookie the page cannot read');

  // ---- needs attention: the stuck saga, with why
  const row = `#attention tr[data-id="${STUCK}"]`;
  await page.waitForSelector(row);
  const rowText = await text(row);
  check(rowText.includes('reserve_credit') && rowText.includes('failed'), `the stuck row: ${rowText}`);
  await shot('attention');
  ok('Needs attention lists the stuck saga with its step and status');

  // ---- the saga: timeline with the failed step, drawn
  await page.click(`${row} a`);
  await page.waitForSelector('svg.timeline');
  check(await page.$$eval('svg.timeline rect.tl-bad', l => l.length) >= 1, 'the timeline marks a failed attempt');
  check(await page.$$eval('svg.timeline .tl-compline', l => l.length) === 1, 'the timeline shows where compensation began');
  const [tw, th] = await size('svg.timeline');
  const [bw] = await size('svg.timeline rect.tl-bad');
  check(tw > 300 && th > 40 && bw >= 1, `the timeline is laid out ${tw}x${th}, its failed bar ${bw} px wide`);
  const steps = await text('#steps');
  check(/reserve_credit/.test(steps) && /compensation_failed|failed/.test(steps), `steps: ${steps}`);
  await shot('saga-stuck');
  ok(`the saga page: a ${Math.round(tw)}x${Math.round(th)} px timeline marking the failed attempt and where compensation began; the failed step`);

  // ---- retry it with a reason; the page follows it to the end
  await page.select('form.repair-form select[name=action]', 'retry');
  await page.click('form.repair-form button[type=submit]');
  await waitText('#repair-result', 'A reason is required');
  await page.type('form.repair-form textarea[name=reason]', 'payment is back (INC-7)');
  await page.click('form.repair-form button[type=submit]');
  await waitText('#repair-result', 'retry:');
  await waitText('#saga-status', 'compensated', 30000);
  await waitText('#history tr.operator', 'operator_retry');
  const line = await text('#history tr.operator');
  check(line.includes('token:oncall-alice') && line.includes('payment is back (INC-7)'), `history: ${line}`);
  await shot('saga');
  ok('retry with a reason (none refused first): the page shows it compensated, the history names token:oncall-alice and why');

  // ---- a definition's drawing
  await page.goto(`${BASE}/#/definitions/order_parallel`);
  await page.waitForSelector('svg.drawing .dr-group');
  check(await page.$$eval('svg.drawing .dr-comp', l => l.length) >= 3, 'compensations are drawn');
  const [dw, dh] = await size('svg.drawing');
  check(dw > 300 && dh > 100, `the drawing is laid out ${dw}x${dh}`);
  await shot('definition');
  ok(`Definitions: order_parallel drawn (${Math.round(dw)}x${Math.round(dh)} px: its parallel group, compensations)`);

  // ---- the other pages load without error
  await page.goto(`${BASE}/#/sagas?definition=credit`);
  await waitText('#sagas', STUCK.slice(0, 8));
  await waitText('.counts', 'credit:');
  await page.goto(`${BASE}/#/services`);
  await waitText('#services', 'payment');
  await page.goto(`${BASE}/#/repair`);
  await waitText('main button', 'Count them (dry run)');
  ok('Sagas (a search and its counts), Services and Repair many load');

  // ---- keyboard: the skip link first
  await page.goto(`${BASE}/#/attention`);
  await page.reload();
  await page.waitForSelector('#attention, p.good');
  await page.keyboard.press('Tab');
  check(await page.evaluate(() => document.activeElement.className) === 'skip', 'the first Tab reaches the skip link');
  ok('keyboard: the first Tab reaches the skip link');

  // ---- a narrow window
  await page.setViewport({ width: 380, height: 800 });
  await page.goto(`${BASE}/#/saga/${STUCK}`);
  await page.waitForSelector('svg.timeline');
  // Firefox's scrollbar takes room (innerWidth counts it, clientWidth
  // does not): the page must fit in what is left.
  const [inner, client, scroll] = await page.evaluate(() =>
    [window.innerWidth, document.documentElement.clientWidth, document.documentElement.scrollWidth]);
  check(inner === 380, `the window is ${inner} px wide, not 380`);
  check(scroll - client <= 1, `the page is ${scroll} px wide in a 380 px window (${client} px beside its scrollbar)`);
  await shot('saga-narrow');
  await page.setViewport({ width: 1280, height: 860 });
  ok('a 380 px window: no sideways scrolling of the page');

  // ---- the reader: no repair buttons
  await page.click('#who button');
  await page.waitForSelector('#token');
  await page.type('#token', READER_TOKEN);
  await page.click('form.login button[type=submit]');
  await waitText('#who', 'token:support-bob');
  await page.goto(`${BASE}/#/saga/${STUCK}`);
  await page.waitForSelector('svg.timeline');
  await waitText('section.repair', 'may read but not repair');
  const repairButtons = () => page.$$eval('main button', l => l.filter(b => /Repair|Count them/.test(b.textContent)).length);
  check(await repairButtons() === 0, 'a reader sees a Repair button');
  await page.goto(`${BASE}/#/repair`);
  await waitText('main', 'may read but not repair');
  check(await repairButtons() === 0, 'a reader sees bulk repair buttons');
  ok('a reader: no repair form or button on the saga or Repair pages');

  check(problems.length === 0, `console errors, CSP violations or outside fetches: ${problems.join(' | ')}`);
  check(outside.length === 0, `Firefox tried to reach outside this machine: ${outside.join(' | ')}`);
  ok('no console error, no CSP violation, nothing fetched from outside sagad, and Firefox itself reached nothing else');
} catch (e) {
  await shot('failure').catch(() => {});
  console.error(`test_console_firefox: ${e.message}`);
  if (problems.length) console.error(`browser said: ${problems.join(' | ')}`);
  if (outside.length) console.error(`asked the proxy: ${outside.join(' | ')}`);
  await browser.close().catch(() => {});
  sink.close();
  process.exit(1);
}
await browser.close();
sink.close();
