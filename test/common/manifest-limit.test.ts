/**
 * The inline manifests limit: the same number (1 MiB of UTF-8) in the spec schema, the control
 * plane's answer and the docs; the error names the field and points to the git source.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { MAX_MANIFEST_BYTES, manifestSpecSchema } from '../../common/specs.ts';
import { removeDir, startTestControlPlane, type TestControlPlane } from '../support/control-plane.ts';

/** A manifest of exactly `bytes` UTF-8 bytes. */
const manifestOf = (bytes: number) => {
  const head = 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: big}\ndata: {a: "';
  return `${head}${'x'.repeat(bytes - head.length - 3)}"}\n`;
};

describe('inline manifests limit (common/specs.ts)', function () {
  this.timeout(30_000);
  let t: TestControlPlane;
  before(async () => {
    t = await startTestControlPlane();
    await t.createCluster('lim');
  });
  after(async () => {
    await t.close();
    removeDir(t.dataDir);
  });

  it('is 1 MiB of UTF-8 bytes, not 256 KiB and not characters', () => {
    assert.equal(MAX_MANIFEST_BYTES, 1024 * 1024);
    assert.equal(Buffer.byteLength(manifestOf(MAX_MANIFEST_BYTES)), MAX_MANIFEST_BYTES);
    assert.ok(manifestSpecSchema.safeParse({ manifests: manifestOf(MAX_MANIFEST_BYTES) }).success);
    assert.ok(!manifestSpecSchema.safeParse({ manifests: manifestOf(MAX_MANIFEST_BYTES + 1) }).success);
    // 600,000 two-byte characters: fewer characters than the limit, more bytes.
    assert.ok(!manifestSpecSchema.safeParse({ manifests: 'é'.repeat(600_000) }).success);
  });

  it('the control plane queues a manifest of cert-manager\'s size (1,014,696 bytes) and refuses a larger one naming the field and the git source', async () => {
    const ok = await t.admin.request<{ id: number }>('POST', '/v1/commands', { target: { cluster: 'lim' }, type: 'manifest', spec: { manifests: manifestOf(1_014_696) } });
    assert.equal(ok.status, 202);
    for (const spec of [{ manifests: manifestOf(MAX_MANIFEST_BYTES + 1) }]) {
      const r = await t.admin.request<{ error: { code: string; message: string } }>('POST', '/v1/commands', { target: { cluster: 'lim' }, type: 'manifest', spec }, { accept: [400] });
      assert.equal(r.status, 400);
      assert.equal(r.body.error.code, 'invalid_spec');
      assert.match(r.body.error.message, /manifests: inline manifests are limited to 1 MiB \(1048576 bytes, these are 1048577\)/);
      assert.match(r.body.error.message, /source: \{git: \{url, ref, path\}\}/);
    }
    // In a flow step, the path names the step.
    const step = { name: 'big', type: 'manifest', spec: { manifests: manifestOf(MAX_MANIFEST_BYTES + 1) } };
    const f = await t.admin.request<{ error: { message: string } }>('POST', '/v1/commands', { target: { cluster: 'lim' }, type: 'flow', spec: { steps: [step] } }, { accept: [400] });
    assert.match(f.body.error.message, /steps\.0\.spec\.manifests: inline manifests are limited to 1 MiB/);
  });

  it('the docs state the same limits', () => {
    const doc = readFileSync(new URL('../../docs/cluster-agent.md', import.meta.url), 'utf8');
    assert.match(doc, /inline manifests[^.]*at most\s+1 MiB/i);
    assert.match(doc, /32 MiB/);
  });
});
