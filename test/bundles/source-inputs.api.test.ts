/**
 * GET /v1/bundles and /v1/bundles/{name} answer the bundle at the source's registered commit (the
 * console's deploy form is generated from it): name, version, description and typed inputs
 * (type, required, default, description), never its resources or the source's credentials; a
 * source whose bundle does not validate is still registered, with the reason; registering again
 * moves it to the ref's new commit. Real migrated database over HTTPS, a real git source.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { BundleSourceView } from '../../control-plane/bundles/bundles.wire.ts';
import { bundleSourceView } from '../../control-plane/http/openapi.ts';
import { removeDir, startTestControlPlane, tempDir, type TestControlPlane } from '../support/control-plane.ts';
import { bareRepo, type BareRepo } from '../cluster-agent/support.ts';

const BUNDLE = [
  'name: shop',
  'version: 2.1.0',
  'description: A small shop',
  'inputs:',
  '  replicas: {type: number, default: 2, description: How many pods}',
  '  title: {type: string, required: true, description: Shown on the page}',
  '  debug: {type: boolean, default: false}',
  'resources:',
  '  - name: config',
  '    type: manifest',
  '    source: manifests',
  '',
].join('\n');
const MANIFEST = 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: auto\n';

describe('bundles: the bundle at the registered commit (GET /v1/bundles)', function () {
  this.timeout(60_000);
  let t: TestControlPlane;
  let dir: string;
  let repo: BareRepo;

  before(async () => {
    dir = tempDir('tether-source-inputs-');
    t = await startTestControlPlane({ dataDir: join(dir, 'cp'), allowFileRoots: [dir] });
    repo = bareRepo(dir, 'shop');
  });
  after(async () => {
    await t?.close();
    if (dir) removeDir(dir);
  });

  it('answers the typed inputs, name, version and description at the registered commit, in the list too', async () => {
    const commit = repo.commit({ 'shop/bundle.yaml': BUNDLE, 'shop/manifests/settings.yaml': MANIFEST });
    const reg = await t.admin.request<BundleSourceView & { commit: string }>('POST', '/v1/bundles', { name: 'shop', url: repo.url, ref: 'main', path: 'shop', username: 'git-user', password: 'canary-secret-4711' });
    assert.equal(reg.status, 201);
    const one = (await t.admin.request<BundleSourceView>('GET', '/v1/bundles/shop')).body;
    assert.equal(one.commit, commit);
    assert.deepEqual(one.bundle, {
      name: 'shop',
      version: '2.1.0',
      description: 'A small shop',
      inputs: {
        replicas: { type: 'number', description: 'How many pods', required: false, default: 2 },
        title: { type: 'string', description: 'Shown on the page', required: true },
        debug: { type: 'boolean', required: false, default: false },
      },
    });
    assert.equal(one.bundleError, undefined);
    // As documented (the OpenAPI document's schema is generated from this one).
    bundleSourceView.parse(one);
    const list = (await t.admin.request<{ bundles: BundleSourceView[] }>('GET', '/v1/bundles')).body.bundles;
    assert.deepEqual(list.find((b) => b.name === 'shop')?.bundle, one.bundle);
    // The credentials are never answered.
    assert.ok(!JSON.stringify([one, list, reg.body]).includes('canary-secret-4711'));
    assert.equal(one.credentials, true);
  });

  it('registering again moves to the ref’s new commit; a bundle that does not validate is registered with the reason', async () => {
    const next = repo.commit({ 'shop/bundle.yaml': BUNDLE.replace('version: 2.1.0', 'version: 2.2.0') });
    await t.admin.request('POST', '/v1/bundles', { name: 'shop', url: repo.url, ref: 'main', path: 'shop' });
    const one = (await t.admin.request<BundleSourceView>('GET', '/v1/bundles/shop')).body;
    assert.equal(one.commit, next);
    assert.equal(one.bundle?.version, '2.2.0');
    assert.equal(one.credentials, false);

    const broken = repo.commit({ 'shop/bundle.yaml': BUNDLE.replace('{type: number, default: 2', '{type: number, default: two') });
    const r = await t.admin.request('POST', '/v1/bundles', { name: 'shop', url: repo.url, ref: 'main', path: 'shop' });
    assert.equal(r.status, 200);
    const bad = (await t.admin.request<BundleSourceView>('GET', '/v1/bundles/shop')).body;
    assert.equal(bad.commit, broken);
    assert.equal(bad.bundle, null);
    assert.match(bad.bundleError ?? '', /replicas/);
    bundleSourceView.parse(bad);
  });
});
