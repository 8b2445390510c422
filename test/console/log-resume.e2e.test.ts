/**
 * The job page's live log across a control-plane restart, in a real browser: the Server-Sent Events
 * stream breaks, the page opens it again from the last line it received (after=<id>), and every
 * line is shown once, in order, up to the end. The agent is the project's own mTLS agent client
 * (common/agent/agent-client.ts) driven by the test, so lines arrive exactly when the test says.
 */
import assert from 'node:assert/strict';
import type { Browser, Page } from 'playwright-core';
import { silentLogger } from '../../common/logger.ts';
import { startControlPlane } from '../../control-plane/app.ts';
import { eventually, removeDir, startTestControlPlane, type TestAgent, type TestControlPlane } from '../support/control-plane.ts';
import { launchChromium } from './browser.ts';

describe('console: a job log resumes from its last line after the control plane restarts (real browser)', function () {
  this.timeout(120_000);
  let t: TestControlPlane;
  let agent: TestAgent;
  let browser: Browser;
  let page: Page;
  const logRequests: string[] = [];

  before(async () => {
    t = await startTestControlPlane();
    await t.createCluster('lr1');
    agent = await t.agent('lr1', 'cluster-agent');
    browser = await launchChromium({ trustCertPem: t.cp.ca.serverCertPem });
    page = await (await browser.newContext()).newPage();
    page.on('request', (r) => {
      if (r.url().includes('/logs?')) logRequests.push(new URL(r.url()).search);
    });
  });
  after(async () => {
    agent?.client.close();
    await browser?.close();
    await t?.close();
    if (t) removeDir(t.dataDir);
  });

  const shown = () => page.getByLabel('Job log').locator(':scope > div').allTextContents();

  it('shows every line once, in order, across the restart, to the end', async () => {
    const { id } = (await t.admin.request<{ id: number }>('POST', '/v1/commands', { target: { cluster: 'lr1' }, type: 'manifest', spec: { manifests: 'kind: ConfigMap' } })).body;
    const claimed = (await agent.client.poll(5)).command;
    assert.equal(claimed?.id, id);
    const line = (text: string) => ({ stream: 'stdout' as const, text });
    await agent.client.logs(id, claimed!.leaseId, ['one', 'two', 'three'].map(line));

    await page.goto(`${t.url}/jobs/${id}`);
    await page.getByLabel('API token').fill(t.adminToken);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(new RegExp(`/jobs/${id}$`));
    await eventually(async () => (await shown()).length === 3, 10_000, 'three lines');
    await page.locator('[data-log-status="streaming"]').waitFor();

    // The control plane goes away and comes back on the same port and data folder.
    const port = t.cp.port;
    await t.cp.close();
    await page.locator('[data-log-status="reconnecting"]').waitFor({ timeout: 10_000 });
    t.cp = await startControlPlane({ dataDir: t.dataDir, host: '127.0.0.1', port }, { log: silentLogger() });
    await agent.client.logs(id, claimed!.leaseId, ['four', 'five'].map(line));
    await eventually(async () => (await shown()).length === 5, 20_000, 'five lines after the restart');
    await agent.client.logs(id, claimed!.leaseId, [line('six')]);
    await agent.client.report(id, { leaseId: claimed!.leaseId, outcome: 'succeeded', outputs: { done: true } });
    await page.locator('[data-log-status="ended"]').waitFor({ timeout: 20_000 });
    assert.deepEqual(await shown(), ['one', 'two', 'three', 'four', 'five', 'six']);
    // The stream was opened again from the last line received, not from the start.
    assert.equal(logRequests[0], '?follow=1&after=0');
    assert.ok(
      logRequests.slice(1).every((q) => q === '?follow=1&after=3' || q === '?follow=1&after=5'),
      JSON.stringify(logRequests),
    );
    assert.ok(logRequests.includes('?follow=1&after=3'), JSON.stringify(logRequests));
  });
});
