/**
 * The control plane's side of the VPN against a real control plane: address allocation, key
 * registration, peers, vpn-sync queued for the other nodes on join/register/leave, user peers and
 * their client configurations, and role/tenant restrictions.
 */
import assert from 'node:assert/strict';
import { isWg0Usable, nextWg0Index, nextWg1NodeIndex, nextWg1UserIndex, wg0Address, wg1Address } from '../../control-plane/vpn/vpn.addresses.ts';
import { generateWgKeyPair } from '../../control-plane/vpn/wireguard.keys.ts';
import { vpnConfigSchema, type VpnConfig } from '../../common/vpn.ts';
import type { CommandView } from '../../common/wire.ts';
import { HttpError } from '../../common/http-client.ts';
import { removeDir, startTestControlPlane, type TestAgent, type TestControlPlane } from '../support/control-plane.ts';
import { runTetherCli } from './support.ts';
import { join } from 'node:path';

describe('VPN: address plan (pure)', () => {
  it('wg0 skips the network address and the wg1 /21; wg1 splits nodes and users', () => {
    assert.equal(wg0Address(nextWg0Index([])!), '172.24.0.1');
    assert.equal(isWg0Usable(200 * 256), false);
    assert.equal(isWg0Usable(207 * 256 + 255), false);
    assert.equal(isWg0Usable(208 * 256), true);
    const used = Array.from({ length: 200 * 256 - 1 }, (_, i) => i + 1);
    assert.equal(wg0Address(nextWg0Index(used)!), '172.24.208.0');
    assert.equal(nextWg0Index([1, 2, 4]), 3);
    assert.equal(wg1Address(nextWg1NodeIndex([])!), '172.24.200.1');
    assert.equal(nextWg1NodeIndex(Array.from({ length: 254 }, (_, i) => i + 1)), undefined);
    assert.equal(wg1Address(nextWg1UserIndex([])!), '172.24.201.1');
    assert.equal(wg1Address(2046), '172.24.207.254');
  });

  it('generates WireGuard-format Curve25519 keys', () => {
    const k = generateWgKeyPair();
    assert.match(k.privateKey, /^[A-Za-z0-9+/]{43}=$/);
    assert.match(k.publicKey, /^[A-Za-z0-9+/]{43}=$/);
  });
});

describe('VPN: control plane', function () {
  this.timeout(30_000);
  let t: TestControlPlane;
  const agents: TestAgent[] = [];
  const node = async (name: string, cid = 'vpn1') => {
    const a = await t.agent(cid, 'node', { nodeName: name });
    agents.push(a);
    return a;
  };
  const register = async (a: TestAgent, host: string) => {
    const keys = { wg0: generateWgKeyPair(), wg1: generateWgKeyPair() };
    const cfg = vpnConfigSchema.parse(
      await a.client.request('PUT', '/v1/agent/vpn/node', { wg0: { publicKey: keys.wg0.publicKey, listenPort: 51820 }, wg1: { publicKey: keys.wg1.publicKey, listenPort: 51821 }, endpointHost: host }),
    );
    return { cfg, keys };
  };
  const queued = async (nid: string) =>
    (await t.admin.request<{ commands: CommandView[] }>('GET', '/v1/commands?cluster=vpn1&state=queued')).body.commands.filter((c) => c.type === 'vpn-sync' && c.target.node === nid);

  before(async () => {
    t = await startTestControlPlane();
    await t.createCluster('vpn1');
    await t.createCluster('vpn2');
  });
  after(async () => {
    for (const a of agents) a.client.close();
    await t.close();
    removeDir(t.dataDir);
  });

  let n1: TestAgent, n2: TestAgent, n3: TestAgent;
  let c1: VpnConfig;

  it('allocates addresses at join and queues a vpn-sync for the nodes already there (one at a time)', async () => {
    n1 = await node('n1');
    assert.equal((await queued('n1')).length, 0);
    n2 = await node('n2');
    assert.equal((await queued('n1')).length, 1);
    assert.equal((await queued('n2')).length, 0);
    n3 = await node('n3');
    assert.equal((await queued('n1')).length, 1, 'a waiting sync is not doubled');
    assert.equal((await queued('n2')).length, 1);
  });

  it('a registered node gets its addresses and the registered peers with endpoints', async () => {
    c1 = (await register(n1, '10.250.0.2')).cfg;
    assert.equal(c1.wg0.address, '172.24.0.1');
    assert.equal(c1.wg1.address, '172.24.200.1');
    assert.equal(c1.wg0.network, '172.24.0.0/16');
    assert.deepEqual(c1.wg0.peers, [], 'n2 and n3 have no keys yet');
    const r2 = await register(n2, '10.250.0.3');
    await register(n3, 'fd00::3');
    const again = vpnConfigSchema.parse(await n1.client.request('GET', '/v1/agent/vpn/config'));
    assert.deepEqual(again.wg0.peers.map((p) => [p.nid, p.endpoint, p.allowedIps[0]]), [['n2', '10.250.0.3:51820', '172.24.0.2/32'], ['n3', '[fd00::3]:51820', '172.24.0.3/32']]);
    assert.equal(again.wg0.peers[0]!.publicKey, r2.keys.wg0.publicKey);
  });

  it('re-registering the same keys changes nothing and queues nothing new', async () => {
    const before = (await t.admin.request<{ commands: CommandView[] }>('GET', '/v1/commands?cluster=vpn1')).body.commands.length;
    const cfg = vpnConfigSchema.parse(await n1.client.request('GET', '/v1/agent/vpn/config'));
    assert.equal(cfg.wg0.address, c1.wg0.address);
    const after = (await t.admin.request<{ commands: CommandView[] }>('GET', '/v1/commands?cluster=vpn1')).body.commands.length;
    assert.equal(after, before);
  });

  it('a revoked node leaves: the others get a vpn-sync and no longer list it', async () => {
    // Clear what is queued so the new sync is visible.
    for (const c of [...(await queued('n1')), ...(await queued('n3'))]) await t.admin.request('POST', `/v1/commands/${c.id}/cancel`);
    await t.admin.request('POST', `/v1/agents/${n2.identity.agentId}/revoke`);
    assert.equal((await queued('n1')).length, 1);
    assert.equal((await queued('n3')).length, 1);
    const cfg = vpnConfigSchema.parse(await n1.client.request('GET', '/v1/agent/vpn/config'));
    assert.deepEqual(cfg.wg0.peers.map((p) => p.nid), ['n3']);
    await assert.rejects(n2.client.request('GET', '/v1/agent/vpn/config'), (e: HttpError) => e.status === 403);
    const view = (await t.admin.request<{ nodes: { nid: string }[] }>('GET', '/v1/clusters/vpn1/vpn')).body;
    assert.deepEqual(view.nodes.map((n) => n.nid), ['n1', 'n3']);
  });

  it('user peers: a client config with every node as its only peers; nodes accept it on wg1', async () => {
    const res = await t.admin.request<{ user: { id: string; address: string; publicKey: string }; clientConfig: string; privateKeyIncluded: boolean }>('POST', '/v1/clusters/vpn1/vpn/users', { name: 'alice' });
    assert.equal(res.status, 201);
    assert.equal(res.body.user.address, '172.24.201.1');
    assert.ok(res.body.privateKeyIncluded);
    const conf = res.body.clientConfig;
    assert.match(conf, /PrivateKey = [A-Za-z0-9+/]{43}=/);
    assert.match(conf, /Address = 172\.24\.201\.1\/32/);
    assert.equal((conf.match(/\[Peer\]/g) ?? []).length, 2, 'one peer per node (n1, n3), never another user');
    assert.match(conf, /AllowedIPs = 172\.24\.200\.1\/32\nEndpoint = 10\.250\.0\.2:51821/);
    const cfg = vpnConfigSchema.parse(await n1.client.request('GET', '/v1/agent/vpn/config'));
    assert.deepEqual(cfg.wg1.peers, [{ name: 'alice', publicKey: res.body.user.publicKey, allowedIps: ['172.24.201.1/32'] }]);
    // The private key is handed out once and not stored.
    const again = await t.admin.request<{ clientConfig: string }>('GET', `/v1/clusters/vpn1/vpn/users/${res.body.user.id}/config`);
    assert.match(again.body.clientConfig, /PrivateKey = <your private key>/);
    // A user with their own key; a second user gets the next address.
    const bob = await t.admin.request<{ user: { address: string }; privateKeyIncluded: boolean }>('POST', '/v1/clusters/vpn1/vpn/users', { name: 'bob', publicKey: generateWgKeyPair().publicKey });
    assert.equal(bob.body.user.address, '172.24.201.2');
    assert.equal(bob.body.privateKeyIncluded, false);
    await assert.rejects(t.admin.request('POST', '/v1/clusters/vpn1/vpn/users', { name: 'bob' }), (e: HttpError) => e.status === 409);
    await t.admin.request('DELETE', `/v1/clusters/vpn1/vpn/users/${res.body.user.id}`);
    const after = vpnConfigSchema.parse(await n1.client.request('GET', '/v1/agent/vpn/config'));
    assert.deepEqual(after.wg1.peers.map((p) => p.name), ['bob']);
  });

  it('only node agents reach the agent routes; clusters are separate meshes', async () => {
    const ca = await t.agent('vpn1', 'cluster-agent');
    agents.push(ca);
    await assert.rejects(ca.client.request('GET', '/v1/agent/vpn/config'), (e: HttpError) => e.status === 403 && e.code === 'wrong_role');
    const other = await node('n1', 'vpn2');
    const cfg = vpnConfigSchema.parse(await other.client.request('GET', '/v1/agent/vpn/config'));
    assert.equal(cfg.wg0.address, '172.24.0.1', 'addresses are per cluster');
    assert.deepEqual(cfg.wg0.peers, []);
    await assert.rejects(n1.client.request('PUT', '/v1/agent/vpn/node', { wg0: { publicKey: 'x', listenPort: 1 } }), (e: HttpError) => e.status === 400);
    await assert.rejects(t.admin.request('GET', '/v1/clusters/nope/vpn'), (e: HttpError) => e.status === 404);
  });

  it('the tether CLI shows the VPN and creates/deletes user peers', async () => {
    const env = { TETHER_URL: t.url, TETHER_API_KEY: t.adminToken, TETHER_CA_FILE: join(t.dataDir, 'ca.crt') };
    const created = await runTetherCli(['vpn', 'users', 'create', 'vpn1', 'carol'], env);
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stdout, /^# Tether VPN access for carol\n\[Interface\]\nPrivateKey = [A-Za-z0-9+/]{43}=\nAddress = 172\.24\.201\.\d+\/32/);
    const show = await runTetherCli(['vpn', 'show', 'vpn1', '--json'], env);
    assert.equal(show.code, 0, show.stderr);
    const v = JSON.parse(show.stdout) as { nodes: { nid: string }[]; users: { id: string; name: string }[] };
    assert.deepEqual(v.nodes.map((n) => n.nid), ['n1', 'n3']);
    const carol = v.users.find((u) => u.name === 'carol')!;
    const del = await runTetherCli(['vpn', 'users', 'delete', 'vpn1', carol.id], env);
    assert.equal(del.code, 0, del.stderr);
    const table = await runTetherCli(['vpn', 'show', 'vpn1'], env);
    assert.match(table.stdout, /NODE\s+WG0\s+WG1\s+ENDPOINT/);
    assert.doesNotMatch(table.stdout, /carol/);
  });
});
