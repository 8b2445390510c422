/**
 * Instances in the console, in a real browser (headless Chromium via playwright-core), against a real
 * control plane, a real cluster agent process and a real kube-apiserver (envtest; real helm and git):
 * the deploy form generated from a bundle's typed inputs (defaults, required marks, hints, checks in
 * the page, the server's invalid_inputs at its field), the example webapp bundle deployed from it, its deploy job's log streamed to the
 * end, its endpoint link opened (the browser resolves the instance's host to a loopback server
 * standing in for the cluster's ingress: it serves the page the chart put in the cluster, read from
 * the kube-apiserver), an upgrade from the form generated from its typed inputs, the drift check,
 * history, delete through the confirmation dialog; a node's VPN peers and handshake age (seeded
 * heartbeat). axe-core clean and screenshots on each page.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import type { InstanceView } from '../../control-plane/bundles/bundles.wire.ts';
import { startEnvtest, type Envtest } from '../support/envtest.ts';
import { REPO_ROOT, eventually, removeDir, startTestControlPlane, tempDir, type TestControlPlane } from '../support/control-plane.ts';
import { readTree } from '../support/bundles.ts';
import { bareRepo, createNamespace, kubeGet, spawnAgent, type AgentProcess } from '../cluster-agent/support.ts';
import { checkPage, launchChromium } from './browser.ts';

const CID = 'apps';
const shopBundle = (titleType: string) =>
  `name: shop\nversion: 2.1.0\ndescription: A small shop\ninputs:\n  replicas: {type: number, default: 2, description: How many pods}\n  title: {type: ${titleType}, required: true, description: Shown on the page}\n  debug: {type: boolean, default: false}\nresources:\n  - name: config\n    type: manifest\n    source: manifests\n`;

describe('console: instances in a real browser (cluster agent on a real kube-apiserver)', function () {
  this.timeout(300_000);
  this.bail(true); // each step builds on the one before
  let env: Envtest;
  let t: TestControlPlane;
  let dir: string;
  let agent: AgentProcess | undefined;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let ingress: Server;
  let domain: string;
  let osid = '';
  const pageErrors: string[] = [];

  const instance = async () => (await t.admin.request<InstanceView>('GET', `/v1/instances/${osid}`)).body;
  const nav = (label: string) => page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: label, exact: true }).click();
  const stateBadge = (value: string) => page.locator('.kv dd .badge', { hasText: new RegExp(`^${value}$`) }).first();

  before(async function () {
    dir = tempDir('tether-console-instances-');
    [env, t] = await Promise.all([startEnvtest(), startTestControlPlane({ dataDir: join(dir, 'cp'), allowFileRoots: [dir] })]);
    await t.createCluster(CID);
    domain = (await t.admin.request<{ clusters: { cid: string; domain: string }[] }>('GET', '/v1/clusters')).body.clusters.find((c) => c.cid === CID)!.domain;
    await createNamespace(env, 'tether-system');
    const repo = bareRepo(dir, 'stacks');
    repo.commit(readTree(join(REPO_ROOT, 'bundles/webapp'), 'webapp'));
    await t.admin.request('POST', '/v1/bundles', { name: 'webapp', url: repo.url, ref: 'main', path: 'webapp' });
    // A second bundle with a required, a number and a boolean input; once registered, its title
    // becomes a number behind the form's back, so the server's refusal is seen at the field.
    const shop = bareRepo(dir, 'shop');
    shop.commit({ 'shop/bundle.yaml': shopBundle('string'), 'shop/manifests/settings.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n' });
    await t.admin.request('POST', '/v1/bundles', { name: 'shop', url: shop.url, ref: 'main', path: 'shop' });
    shop.commit({ 'shop/bundle.yaml': shopBundle('number') });
    agent = spawnAgent({ t, env, namespace: 'tether-system', workDir: join(dir, 'work'), token: await t.bootstrapToken(CID, 'cluster-agent') });
    await agent.waitForLog(/cluster agent running/);
    // The cluster's ingress, played by a loopback server: for Host <osid>.<domain> it serves the
    // index.html of the instance's ConfigMap as the kube-apiserver holds it (what nginx would serve).
    ingress = createServer((req, res) => {
      const host = (req.headers.host ?? '').split(':')[0]!;
      const ns = host.endsWith(`.${domain}`) ? host.slice(0, -domain.length - 1) : '';
      void kubeGet<{ data: Record<string, string> }>(env, `/api/v1/namespaces/${encodeURIComponent(ns)}/configmaps/app-content`).then(
        (cm) => {
          if (!cm) return void res.writeHead(404).end('no such host');
          res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(cm.data['index.html']);
        },
        () => res.writeHead(502).end(),
      );
    });
    await new Promise<void>((r) => ingress.listen(0, '127.0.0.1', r));
    const { port } = ingress.address() as { port: number };
    browser = await launchChromium({ trustCertPem: t.cp.ca.serverCertPem, hostRules: `MAP *.${domain} 127.0.0.1:${port}` });
    context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'en-GB', timezoneId: 'UTC' });
    page = await context.newPage();
    page.on('pageerror', (e) => pageErrors.push(`pageerror: ${e.message}`));
  });

  after(async () => {
    await browser?.close();
    ingress?.close();
    await agent?.stop();
    await t?.close();
    await env?.stop();
    if (dir) removeDir(dir);
  });

  it('deploys the webapp from the form and follows its job to the end', async () => {
    await page.goto(`${t.url}/instances`);
    await page.getByLabel('API token').fill(t.adminToken);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(/\/instances$/);
    await page.locator('#d-bundle option[value="webapp"]').waitFor({ state: 'attached' });
    await page.locator('#d-cluster option', { hasText: CID }).waitFor({ state: 'attached' });
    // The form is generated from the selected bundle's typed inputs (GET /v1/bundles).
    await page.locator('#d-bundle').selectOption('shop');
    const replicas = page.getByLabel('replicas');
    assert.equal(await replicas.getAttribute('type'), 'number');
    assert.equal(await replicas.inputValue(), '2', 'the default filled in');
    assert.equal(await page.getByLabel('debug').getAttribute('type'), 'checkbox');
    assert.equal(await page.getByLabel('debug').isChecked(), false);
    const title = page.getByLabel(/^title/);
    assert.equal(await title.getAttribute('aria-required'), 'true');
    assert.match(await page.locator('label[for="dep-title"]').innerText(), /required/);
    assert.equal(await page.locator('#dep-title-hint').innerText(), 'Shown on the page');
    assert.equal(await title.getAttribute('aria-describedby'), 'dep-title-hint');
    // Checked in the page before sending: a required input left empty, a number that is not one.
    await replicas.fill('');
    await replicas.focus();
    await page.keyboard.type('1e');
    await page.getByRole('button', { name: 'Deploy' }).click();
    await page.locator('#dep-title-error').waitFor();
    assert.equal(await page.locator('#dep-title-error').innerText(), 'title is required');
    assert.equal(await page.locator('#dep-replicas-error').innerText(), 'replicas must be a number');
    assert.equal(await title.getAttribute('aria-invalid'), 'true');
    const instanceCount = async () => (await t.admin.request<{ instances: unknown[] }>('GET', '/v1/instances')).body.instances.length;
    assert.equal(await instanceCount(), 0, 'nothing sent');
    // The server's invalid_inputs problem (the bundle changed since registration) next to its field.
    await replicas.fill('3');
    await page.getByLabel('debug').check();
    await title.fill('Hello');
    await page.getByRole('button', { name: 'Deploy' }).click();
    await page.locator('#dep-title-error', { hasText: 'must be a number' }).waitFor();
    assert.match(await page.locator('#dep-title-error').innerText(), /^input "title" must be a number \(got "Hello"\)$/);
    assert.equal(await page.locator('#dep-replicas-error').count(), 0);
    assert.match(page.url(), /\/instances$/);
    assert.equal(await instanceCount(), 0);
    await checkPage(page, 'deploy-form-error');
    // The webapp's own fields, with its defaults.
    await page.locator('#d-bundle').selectOption('webapp');
    assert.equal(await page.getByLabel('image').inputValue(), 'nginxinc/nginx-unprivileged:1.27-alpine');
    assert.equal(await page.getByLabel('replicas').inputValue(), '1');
    assert.equal(await page.locator('#dep-title').count(), 0);
    await page.getByLabel('message').fill('Hello from the console');
    await page.getByLabel('replicas').fill('2');
    await checkPage(page, 'deploy-form');
    await page.getByRole('button', { name: 'Deploy' }).click();
    await page.waitForURL(/\/instances\/web-[a-z0-9]{5}$/);
    osid = /\/instances\/(web-[a-z0-9]{5})$/.exec(page.url())![1]!;
    const view = await instance();
    assert.equal(view.inputs.message, 'Hello from the console');
    assert.equal(view.inputs.replicas, 2, 'a number input sent as a number');
    await page.getByRole('link', { name: `job #${view.job.id}` }).click();
    await page.locator('[data-log-status="ended"]').waitFor({ timeout: 180_000 });
    await page.locator('.kv .badge', { hasText: 'succeeded' }).waitFor({ timeout: 10_000 });
    assert.ok((await page.getByLabel('Job log').locator(':scope > div').count()) > 0, 'the deploy job logged');
    await checkPage(page, 'deploy-job');
  });

  it('shows the deployed instance with its outputs, and its endpoint link opens the page the cluster serves', async () => {
    await page.goBack();
    await page.waitForURL(/\/instances\/web-/);
    await stateBadge('deployed').waitFor({ timeout: 20_000 });
    assert.match(await page.locator('dl.kv').last().innerText(), new RegExp(`url\\s+${osid}\\.${domain.replace(/\./g, '\\.')}`));
    const link = page.getByRole('link', { name: `http://${osid}.${domain}/` });
    const [tab] = await Promise.all([context.waitForEvent('page'), link.click()]);
    await tab.waitForLoadState();
    assert.equal(tab.url(), `http://${osid}.${domain}/`);
    assert.equal(await tab.locator('p').innerText(), 'Hello from the console');
    await tab.close();
    await checkPage(page, 'instance');
    await nav('Instances');
    await page.getByRole('link', { name: osid }).waitFor();
    await checkPage(page, 'instances');
  });

  it('upgrades from the generated form (typed inputs), checks drift, and lists the history', async () => {
    await page.getByRole('link', { name: osid }).click();
    await stateBadge('deployed').waitFor();
    const replicas = page.getByLabel('replicas');
    assert.equal(await replicas.getAttribute('type'), 'number');
    await page.getByLabel('message').fill('Upgraded from the console');
    await replicas.fill('3');
    await page.getByRole('button', { name: 'Upgrade' }).click();
    await eventually(async () => (await instance()).version === 2, 10_000, 'version 2');
    await eventually(async () => (await instance()).state === 'deployed', 180_000, 'the upgrade deployed');
    const v = await instance();
    assert.equal(v.inputs.message, 'Upgraded from the console');
    assert.equal(v.inputs.replicas, 3);
    const dep = await kubeGet<{ spec: { replicas: number } }>(env, `/apis/apps/v1/namespaces/${osid}/deployments/app`);
    assert.equal(dep?.spec.replicas, 3);
    await page.locator('table tbody tr').nth(1).waitFor({ timeout: 20_000 });
    assert.deepEqual(
      (await page.locator('table tbody tr td:first-child').allTextContents()).map(Number),
      [2, 1],
      'the history, newest first',
    );
    await page.getByRole('button', { name: 'Check for drift' }).click();
    await page.locator('.diff .badge', { hasText: 'succeeded' }).waitFor({ timeout: 180_000 });
    await page.locator('.kv dd .badge', { hasText: /^synced$/ }).waitFor({ timeout: 20_000 });
    const report = page.getByRole('table', { name: 'Drift report' });
    assert.match(await report.innerText(), /Deployment\/[a-z0-9-]+\/app\s+in-sync/);
    assert.equal(await report.locator('.badge', { hasNotText: 'in-sync' }).count(), 0, 'every object in sync');
    assert.equal((await instance()).syncStatus, 'synced');
    await checkPage(page, 'instance-upgraded');
  });

  it('deletes the instance after a confirmation', async () => {
    await page.getByRole('button', { name: 'Delete instance' }).click();
    const dialog = page.getByRole('dialog', { name: `Delete ${osid}?` });
    await dialog.waitFor();
    await dialog.getByRole('button', { name: 'Delete' }).click();
    await page.waitForURL(/\/instances$/);
    await eventually(async () => ['deleted'].includes((await instance()).state), 180_000, 'the instance deleted');
    assert.equal(await kubeGet(env, `/apis/apps/v1/namespaces/${osid}/deployments/app`), undefined, 'the deployment is gone');
    assert.deepEqual(pageErrors, []);
  });

  it("shows a node's VPN peers with their last handshake's age ticking (a seeded heartbeat: no WireGuard here)", async () => {
    // Seeded VPN state, named as such: a real node identity over mutual TLS sends one heartbeat whose
    // vpn section has the form node-agent/vpn/vpn.state.ts gives it; no WireGuard runs in this test.
    const node = await t.agent(CID, 'node', { nodeName: 'edge-1' });
    const key = (c: string) => `${c.repeat(43)}=`;
    const handshake = Math.floor(Date.now() / 1000) - 42;
    await node.client.heartbeat({
      running: [],
      vpn: {
        wg0: {
          interface: 'wg0',
          up: true,
          publicKey: key('A'),
          listenPort: 51820,
          peers: [
            { publicKey: key('B'), endpoint: '203.0.113.7:51820', allowedIps: ['10.77.0.2/32'], latestHandshake: handshake, rxMiB: 1, txMiB: 2 },
            { publicKey: key('C'), endpoint: null, allowedIps: ['10.77.0.3/32'], latestHandshake: null, rxMiB: 0, txMiB: 0 },
          ],
        },
        wg1: { interface: 'wg1', up: false },
      },
    });
    await nav('Nodes & agents');
    const vpn = page.locator(`tr[data-agent="${node.identity.agentId}"] td[data-label="VPN"]`);
    await vpn.getByText('wg0: 2 peer(s)').waitFor();
    const text = await vpn.innerText();
    const age = Number(/203\.0\.113\.7:51820, handshake (\d+) s ago/.exec(text)?.[1] ?? NaN);
    assert.ok(age >= 40 && age < 90, text); // 42 s when sent; the page's clock ticks once a second
    assert.match(text, /no endpoint, handshake never/);
    assert.match(text, /wg1: down/);
    // The age ticks without a new heartbeat.
    await eventually(async () => Number(/handshake (\d+) s ago/.exec(await vpn.innerText())?.[1] ?? 0) > age, 10_000, 'the handshake age ticks');
    await checkPage(page, 'agents-vpn');
    assert.deepEqual(pageErrors, []);
  });
});
