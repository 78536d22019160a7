// Drives the admin console in headless Chromium (puppeteer-core) against a
// running bank; run by scripts/check-console, which sets:
//   BASE        the bank's URL (http://127.0.0.1:PORT)
//   CHROMIUM    the browser to drive
//   PROFILE     a fresh --user-data-dir
//   BANK_LOG    the bank's log file (it logs each rebuild it swaps in)
//   SCREENSHOT  when 1, the path of a 1280x800 PNG to write (SHOT)
// Prints each step; exits 1 with what failed.
import { readFileSync } from 'node:fs';
import puppeteer from 'puppeteer-core';

const { BASE, CHROMIUM, PROFILE, BANK_LOG, SHOT } = process.env;
const PATIENCE = 10_000;
const failures = [];
const step = (text) => console.log(`  ${text}`);
const fail = (text) => { failures.push(text); console.error(`FAIL: ${text}`); };
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function api(method, path, body) {
  const response = await fetch(BASE + path, {
    method,
    headers: body ? { 'content-type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  if (!response.ok) throw new Error(`${method} ${path} answered ${response.status}: ${text}`);
  return json;
}

const swapped = () => readFileSync(BANK_LOG, 'utf8').split('\n')
  .filter((line) => line.includes('rebuild swapped in') && line.includes('accounts')).length;

const browser = await puppeteer.launch({
  executablePath: CHROMIUM,
  headless: true,
  userDataDir: PROFILE,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    `--user-data-dir=${PROFILE}`],
});
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 800 });
  const consoleErrors = [];
  const badRequests = [];
  page.on('console', (message) => {
    if (message.type() === 'error' || message.type() === 'warn') consoleErrors.push(`${message.type()}: ${message.text()}`);
  });
  page.on('pageerror', (error) => consoleErrors.push(`uncaught: ${error.message}`));
  page.on('requestfailed', (request) => badRequests.push(`${request.method()} ${request.url()}: ${request.failure()?.errorText}`));
  page.on('response', (response) => {
    if (response.status() >= 400) badRequests.push(`${response.request().method()} ${response.url()}: ${response.status()}`);
  });

  const loaded = await page.goto(`${BASE}/admin`, { waitUntil: 'load' });
  if (loaded.status() !== 200) fail(`GET /admin answered ${loaded.status()}`);
  step(`GET /admin: ${loaded.status()} ${loaded.headers()['content-type']}`);

  // The tables, from /admin/projections and /admin/sagas.
  await page.waitForSelector('#projections tbody tr[data-name="accounts"]', { timeout: PATIENCE })
    .then(() => step('shows projection accounts'), () => fail('the page does not show projection `accounts`'));
  await page.waitForSelector('#sagas tbody tr[data-name="transfer-money"]', { timeout: PATIENCE })
    .then(() => step('shows saga transfer-money'), () => fail('the page does not show saga `transfer-money`'));
  const head = await page.$eval('#head', (node) => node.textContent);
  if (!/^\d+$/.test(head)) fail(`the head position shows ${JSON.stringify(head)}`);

  // The live tail: the socket must be open before the event is written, as
  // the page follows live events only.
  await page.waitForFunction(() => document.getElementById('tail-status').textContent.startsWith('live'), { timeout: PATIENCE })
    .then(() => step('event tail is live'), () => fail('the event tail never went live'));
  const opened = await api('POST', '/commands/open-account', { owner: 'Ada', email: 'ada@example.com' });
  const row = `#events tbody tr[data-position="${opened.position}"]`;
  await page.waitForSelector(row, { timeout: 5_000 })
    .then(() => step(`event #${opened.position} (${opened.stream_id}) appears in the tail`),
      () => fail(`event #${opened.position} written over HTTP did not appear in the tail within 5 s`));
  if (await page.$(row)) {
    await page.click(row);
    await page.waitForFunction(() => !document.getElementById('detail').hidden, { timeout: PATIENCE });
    const detail = await page.$eval('#detail', (node) => ({
      title: document.getElementById('detail-title').textContent,
      data: document.getElementById('detail-data').textContent,
      metadata: document.getElementById('detail-metadata').textContent,
      chain: document.getElementById('detail-chain').textContent,
      visible: node.getBoundingClientRect().height > 0,
    }));
    const data = JSON.parse(detail.data || 'null');
    if (!detail.visible || !detail.title.includes('AccountOpened')) fail(`the detail view shows ${JSON.stringify(detail.title)}`);
    else if (data?.owner !== 'Ada' || data?.email !== 'ada@example.com') fail(`the detail view shows data ${detail.data}`);
    else if (!detail.metadata.includes('correlation_id') || !detail.chain.includes(`#${opened.position}`)) fail('the detail view lacks the metadata or the correlation chain');
    else step(`clicking it shows its data ${JSON.stringify(data)} and correlation chain`);
  }

  // Rebuild from the page; the script sees it through /admin/projections
  // (state `rebuilding` or a rebuild checkpoint, while it lasts) and the
  // bank's log (each rebuild swapped in), as a rebuild of a few events on
  // the memory store may be over before a poll sees it.
  const before = swapped();
  const answered = page.waitForResponse((response) => response.request().method() === 'POST'
    && response.url().endsWith('/admin/projections/accounts/rebuild'), { timeout: PATIENCE });
  await page.click('#projections tbody tr[data-name="accounts"] button[data-action="rebuild"]');
  const rebuild = await answered.catch(() => null);
  if (!rebuild || rebuild.status() !== 202) fail(`clicking Rebuild answered ${rebuild ? rebuild.status() : 'nothing'}`);
  let seenRebuilding = false;
  let settled = null;
  const until = Date.now() + PATIENCE;
  while (Date.now() < until) {
    const accounts = (await api('GET', '/admin/projections')).find((p) => p.name === 'accounts');
    if (accounts.state === 'rebuilding' || accounts.rebuild_checkpoint !== undefined) seenRebuilding = true;
    if (swapped() > before && accounts.state === 'running' && accounts.lag === 0) { settled = accounts; break; }
    await sleep(20);
  }
  if (!settled) fail('after Rebuild, GET /admin/projections never showed `accounts` rebuilt and running');
  else step(`Rebuild: 202, ${seenRebuilding ? 'GET /admin/projections showed it rebuilding, ' : ''}rebuilt and swapped in (bank log), now ${settled.state} at checkpoint ${settled.checkpoint}`);
  await page.waitForFunction(() => /accounts: rebuild accepted/.test(document.getElementById('action-result').textContent), { timeout: PATIENCE })
    .then(() => step('the page shows the answer: ' + 'rebuild accepted'), () => fail('the page does not show the rebuild\'s answer'));

  if (SHOT) {
    // Something to look at: a transfer (a saga and its commands, one
    // correlation chain) and a few polls of lag history.
    const grace = await api('POST', '/commands/open-account', { owner: 'Grace', email: 'grace@example.com', initial_deposit: 500 });
    const transfer = await api('POST', '/commands/transfer-money', { from_account_id: grace.aggregate_id, to_account_id: opened.aggregate_id, amount: 120 });
    await sleep(6_500);
    const last = await page.$$eval('#events tbody tr', (rows) => rows.map((r) => ({ position: r.dataset.position, text: r.textContent })));
    const target = last.find((r) => r.text.includes('MoneyDeposited')) || last[0];
    if (target) await page.click(`#events tbody tr[data-position="${target.position}"]`);
    await sleep(300);
    await page.screenshot({ path: SHOT, type: 'png' });
    step(`screenshot written to ${SHOT} (transfer ${transfer.saga_id})`);
  }

  await sleep(500);
  for (const error of consoleErrors) fail(`console ${error}`);
  for (const request of badRequests) fail(`request failed: ${request}`);
  if (!consoleErrors.length && !badRequests.length) step('no console errors, no failed requests');
} catch (error) {
  fail(error.stack || String(error));
} finally {
  await browser.close();
}
process.exit(failures.length ? 1 : 0);
