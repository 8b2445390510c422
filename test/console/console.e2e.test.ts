/**
 * The console in a real browser (Debian's headless Chromium via playwright-core) against a real
 * control plane on loopback with a real node agent (register + daemon as processes, no host
 * changes, no VPN): sign in; create a cluster and a token and register the node with the command
 * the page shows; watch it turn healthy, then degraded once stopped (the control plane's manual
 * clock moved past 10 s, the page not reloaded); submit a command from the YAML editor (first an
 * invalid one: the server's error shows at its line) and watch its log stream to the end; cancel a
 * queued one; revoke through the confirmation dialog; sign out. On every page axe-core finds no
 * serious or critical violation, and screenshots (desktop and phone, light and dark) are taken (into docs/console/ with TETHER_CONSOLE_SCREENSHOTS=1).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { ManualClock } from '../../common/clock.ts';
import type { AgentView } from '../../common/wire.ts';
import { REPO_ROOT, eventually, removeDir, startTestControlPlane, stopProcess, tempDir, type TestControlPlane } from '../support/control-plane.ts';
import { killAndWait, startDaemon, type CliResult, type Daemon } from '../node-agent/support.ts';
import { checkPage, launchChromium } from './browser.ts';

/** Splits a POSIX shell command line of words and '…' quoted words (what the console prints). */
export function shellWords(line: string): string[] {
  const out: string[] = [];
  const re = /'((?:[^']|'\\'')*)'|(\S+)/g;
  for (let m = re.exec(line); m; m = re.exec(line)) out.push(m[1] !== undefined ? m[1].replace(/'\\''/g, "'") : m[2]!);
  return out;
}

function run(cmd: string, args: string[], cwd: string): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { cwd, env: { ...process.env, TETHER_NODE_NO_HOST_CHANGES: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), 30_000);
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe('console: in a real browser against a real control plane and node agent', function () {
  this.timeout(180_000);
  this.bail(true); // each step builds on the one before
  const clock = new ManualClock();
  let t: TestControlPlane;
  let dir: string;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let daemon: Daemon | undefined;
  const pageErrors: string[] = [];
  let axeRuns = 0;

  const check = async (name: string) => {
    axeRuns += (await checkPage(page, name)).axeRuns;
  };
  const nav = async (label: string) => {
    // Through the menu on a phone, the links on a desktop: here always at desktop width.
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: label, exact: true }).click();
  };
  /** Polls a page expression (page.waitForFunction would eval a string, which the page's CSP forbids). */
  const waitTrue = (expr: string, timeoutMs: number) => eventually(async () => (await page.evaluate(expr)) === true, timeoutMs, expr);
  let nid = ''; // chosen by the control plane: the shown command names none
  const agentRow = () => page.locator('tr[data-agent]', { hasText: nid });

  before(async () => {
    // The server's clock starts at the browser's now: mocha builds every describe block first, so
    // a clock made there is behind by however long the tests before this file took (the page
    // counts the token's expiry down against the browser's own clock).
    clock.set(Date.now());
    t = await startTestControlPlane({}, { clock, reaper: false });
    dir = tempDir('tether-console-');
    browser = await launchChromium({ trustCertPem: t.cp.ca.serverCertPem });
    context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'en-GB', timezoneId: 'UTC' });
    page = await context.newPage();
    page.on('pageerror', (e) => pageErrors.push(`pageerror: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error' && !/status of 40[0134]/.test(m.text())) pageErrors.push(`console: ${m.text()}`);
    });
  });
  after(async () => {
    if (daemon) await killAndWait(daemon);
    await browser?.close();
    await t?.close();
    if (t) removeDir(t.dataDir);
    if (dir) removeDir(dir);
  });

  it('sends an anonymous visitor to sign-in, and signs in with the API token', async () => {
    await page.goto(`${t.url}/jobs`);
    await page.waitForURL(/\/signin\?next=%2Fjobs$/);
    await page.getByRole('heading', { name: 'Sign in to Tether' }).waitFor();
    await check('signin');
    await page.getByLabel('API token').fill('tether_pat_wrong.token');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: /./ }).waitFor();
    await page.getByLabel('API token').fill(t.adminToken);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(/\/jobs$/);
    // The cookie is HttpOnly and the token is nowhere in the page's storage.
    const cookies = await context.cookies();
    const session = cookies.find((c) => c.name === 'tether_session');
    assert.ok(session, 'a session cookie');
    assert.equal(session.httpOnly, true);
    assert.equal(session.secure, true);
    assert.equal(session.sameSite, 'Strict');
    const storage = String(await page.evaluate('JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }) + document.cookie'));
    assert.ok(!storage.includes(t.adminToken.slice(-20)), 'the API token is not in browser storage');
    await nav('Overview');
    await page.getByRole('heading', { name: 'Clusters' }).waitFor();
    await check('overview-empty');
  });

  let command = '';
  let caPem = '';
  it('creates a cluster and a bootstrap token, and shows the command with its expiry counting down', async () => {
    await nav('Add a server or cluster');
    await page.getByText('Create a cluster').click();
    await page.getByLabel('Cluster id').fill('web1');
    await page.getByRole('button', { name: 'Create cluster' }).click();
    await page.locator('#add-cluster option[value="web1"]').waitFor({ state: 'attached' });
    await page.getByRole('button', { name: 'Create token' }).click();
    const code = page.locator('#command');
    await code.waitFor();
    command = (await code.innerText()).trim();
    assert.match(command, /^tether-node register /);
    assert.match(command, /--token '?tether_bt_/);
    // The copy button puts exactly the shown command on the clipboard.
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: t.url });
    await page.getByRole('button', { name: 'Copy command' }).click();
    await page.getByRole('button', { name: 'Copied' }).waitFor();
    assert.equal(await page.evaluate('navigator.clipboard.readText()'), command);
    await page.locator('summary', { hasText: 'ca.crt' }).click();
    caPem = (await page.locator('#ca-cert').innerText()).trim();
    assert.equal(caPem, t.caPem.trim(), 'the page shows the control plane CA');
    const first = await page.locator('.countdown').innerText();
    assert.match(first, /^(59|60) min|^1 h/);
    await waitTrue(`document.querySelector('.countdown')?.textContent !== ${JSON.stringify(first)}`, 5000);
    await check('add');
  });

  it('registers the node with exactly that command; the node list shows it healthy without a reload', async () => {
    const words = shellWords(command);
    assert.deepEqual(words.slice(0, 2), ['tether-node', 'register']);
    writeFileSync(join(dir, 'ca.crt'), `${caPem}\n`); // the command reads ca.crt: saved from the page, as the operator would
    const config = join(dir, 'etc', 'config.yaml');
    // Here: no VPN (no WireGuard in this test) and a config file under the test's folder.
    const r = await run(join(REPO_ROOT, 'bin', 'tether-node'), [...words.slice(1), '--config', config, '--no-vpn', '--heartbeat-interval-ms', '200'], dir);
    assert.equal(r.code, 0, r.stderr);
    nid = /registered node ([a-z0-9-]+) /.exec(r.stdout)?.[1] ?? '';
    assert.ok(nid, r.stdout);
    await nav('Nodes & agents');
    await agentRow().waitFor();
    const badge = agentRow().locator('.badge');
    assert.match(await agentRow().innerText(), /never/);
    daemon = startDaemon(config);
    await waitTrue(`document.querySelector('tr[data-agent] .badge')?.textContent === 'healthy'`, 30_000);
    assert.equal(await badge.innerText(), 'healthy');
    await waitTrue(`/\\d+ s ago/.test(document.querySelector('tr[data-agent] .age')?.textContent ?? '')`, 10_000);
    await eventually(async () => (await agentRow().innerText()).includes('memory'), 10_000, 'host metrics shown');
    await check('agents');
  });

  let jobId = 0;
  it('submits from the YAML editor: the server’s validation error at its line, then a job whose log streams to the end', async () => {
    await nav('Submit');
    const editor = page.getByLabel('Command (YAML)');
    await editor.fill(`target: {cluster: web1, node: ${nid}}\ntype: install\nspec:\n  dryRun: "yes"\n`);
    await page.getByRole('button', { name: 'Submit' }).click();
    const lineError = page.locator('.line-error[data-line="4"]');
    await lineError.waitFor();
    assert.match(await lineError.innerText(), /spec\.dryRun/);
    assert.equal(await page.locator('.gutter li.bad').innerText(), '4');
    await check('submit-error');
    await editor.fill(`target: {cluster: web1, node: ${nid}}\ntype: install\nspec:\n  dryRun: true\n`);
    await page.getByRole('button', { name: 'Submit' }).click();
    await page.waitForURL(/\/jobs\/\d+$/);
    jobId = Number(/\/jobs\/(\d+)$/.exec(page.url())![1]);
    await page.locator('[data-log-status="ended"]').waitFor({ timeout: 60_000 });
    await page.locator('.kv .badge', { hasText: 'succeeded' }).waitFor({ timeout: 10_000 });
    const log = await page.getByLabel('Job log').locator(':scope > div').allTextContents();
    const stored = (await t.admin.request<{ lines: { text: string }[] }>('GET', `/v1/commands/${jobId}/logs`)).body.lines;
    assert.ok(stored.length > 0, 'the job logged');
    assert.deepEqual(log, stored.map((l) => l.text), 'every stored line shown once, in order');
    await check('job');
  });

  it('shows the node degraded once it stops heartbeating, live', async () => {
    await nav('Nodes & agents');
    await waitTrue(`document.querySelector('tr[data-agent] .badge')?.textContent === 'healthy'`, 10_000);
    assert.equal(await stopProcess(daemon!.proc, 'SIGTERM'), 0);
    daemon = undefined;
    clock.advance(15_000);
    await waitTrue(`document.querySelector('tr[data-agent] .badge')?.textContent === 'degraded'`, 10_000);
    assert.match(await agentRow().locator('.age').innerText(), /^1[4-9] s ago$/);
    await check('agents-degraded');
  });

  it('cancels a queued job', async () => {
    const { id } = (await t.admin.request<{ id: number }>('POST', '/v1/commands', { target: { cluster: 'web1', node: nid }, type: 'preflight', spec: {} })).body;
    await nav('Jobs');
    await page.getByRole('link', { name: `#${id}` }).click();
    await page.locator('.kv .badge', { hasText: 'queued' }).waitFor();
    await page.getByRole('button', { name: 'Cancel job' }).click();
    await page.locator('.kv .badge', { hasText: 'cancelled' }).waitFor({ timeout: 10_000 });
    assert.equal((await t.admin.request<{ state: string }>('GET', `/v1/commands/${id}`)).body.state, 'cancelled');
    await nav('Jobs');
    await page.getByLabel('State').selectOption('cancelled');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.waitForURL(/state=cancelled/);
    // The URL changes before the filtered answer arrives: wait for the succeeded job to leave the list
    // (it times out, failing the test, if the filter does not apply), then every row left is cancelled.
    await page.getByRole('link', { name: `#${jobId}`, exact: true }).waitFor({ state: 'detached', timeout: 10_000 });
    await page.getByRole('link', { name: `#${id}`, exact: true }).waitFor();
    assert.deepEqual(new Set(await page.locator('tbody td[data-label="State"]').allInnerTexts()), new Set(['cancelled']), 'only cancelled jobs listed');
    await check('jobs');
  });

  it('revokes the node through a confirmation dialog that holds the focus', async () => {
    await nav('Nodes & agents');
    await page.getByRole('button', { name: `Revoke ${nid}` }).click();
    const dialog = page.getByRole('dialog', { name: 'Revoke this agent?' });
    await dialog.waitFor();
    for (let i = 0; i < 4; i++) {
      await page.keyboard.press('Tab');
      assert.equal(await page.evaluate("!!document.activeElement?.closest('dialog')"), true, 'focus stays in the dialog');
    }
    await check('agents-revoke-dialog');
    await page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'hidden' });
    const agents = async () => (await t.admin.request<{ agents: AgentView[] }>('GET', '/v1/agents?cluster=web1')).body.agents;
    assert.equal((await agents())[0]!.revoked, false, 'Escape revokes nothing');
    await page.getByRole('button', { name: `Revoke ${nid}` }).click();
    await dialog.getByRole('button', { name: 'Revoke' }).click();
    await agentRow().locator('.badge', { hasText: 'revoked' }).waitFor({ timeout: 10_000 });
    assert.equal((await agents())[0]!.revoked, true);
  });

  it('shows the overview with its figures, the instances page, and signs out', async () => {
    await nav('Overview');
    await page.locator('td', { hasText: 'web1' }).first().waitFor();
    const commands = (await page.getByRole('list', { name: 'commands by state' }).innerText()).replace(/\s+/g, ' ');
    assert.match(commands, /succeeded 1/);
    assert.match(commands, /cancelled 1/);
    assert.match(await page.locator('tr', { hasText: 'web1' }).innerText(), /web1\.[a-z0-9]+\./, 'the cluster with its domain');
    await check('overview');
    await nav('Instances');
    await page.getByRole('heading', { name: 'Deploy a bundle' }).waitFor();
    await check('instances-empty');
    // Keyboard: the first Tab reaches the skip link, which moves the focus to the content.
    await page.reload();
    await page.getByRole('heading', { name: 'Deploy a bundle' }).waitFor();
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate('document.activeElement?.textContent'), 'Skip to content');
    await page.keyboard.press('Enter');
    assert.equal(await page.evaluate('document.activeElement?.id'), 'main');
    // Phone width: the navigation folds behind a menu button.
    await page.setViewportSize({ width: 390, height: 844 });
    const jobsLink = page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Jobs', exact: true });
    assert.equal(await jobsLink.isVisible(), false);
    const menu = page.getByRole('button', { name: 'Menu' });
    assert.equal(await menu.getAttribute('aria-expanded'), 'false');
    await menu.click();
    assert.equal(await menu.getAttribute('aria-expanded'), 'true');
    await jobsLink.click();
    await page.waitForURL(/\/jobs$/);
    await page.getByRole('heading', { name: 'Jobs' }).waitFor();
    // The focus moves in an effect that runs after the new page has painted: wait for it (this times
    // out, failing, if it never moves).
    await waitTrue(`document.activeElement?.id === 'main'`, 5_000); // after a navigation the focus is on the new content
    await page.setViewportSize({ width: 1280, height: 800 });
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL(/\/signin/);
    assert.equal((await context.cookies()).find((c) => c.name === 'tether_session'), undefined, 'the cookie is cleared');
    await page.goto(`${t.url}/jobs`);
    await page.waitForURL(/\/signin/);
    assert.deepEqual(pageErrors, [], 'no script error or CSP violation in the page');
    assert.ok(axeRuns >= 40, `axe ran on every page (${axeRuns} runs)`);
  });
});
