/** WireGuard rendering (pure): the syncconf file, the ip plan, and dump parsing that drops the private key. */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { renderWgConf, planLink, parseLinkState, parseWgDump, meshPeers, userPeers } from '../../node-agent/vpn/wireguard.render.ts';
import { vpnConfigSchema, WG_KEY_RE } from '../../common/vpn.ts';

const K = (c: string) => `${c.repeat(42)}A=`;

describe('node agent: WireGuard rendering', () => {
  const cfg = vpnConfigSchema.parse({
    nid: 'n1',
    wg0: {
      address: '172.24.0.1',
      network: '172.24.0.0/16',
      peers: [
        { nid: 'n3', publicKey: K('C'), endpoint: '10.250.0.4:51820', allowedIps: ['172.24.0.3/32'] },
        { nid: 'n2', publicKey: K('B'), endpoint: '10.250.0.3:51820', allowedIps: ['172.24.0.2/32'] },
      ],
    },
    wg1: { address: '172.24.200.1', network: '172.24.200.0/21', peers: [{ name: 'alice', publicKey: K('D'), allowedIps: ['172.24.201.1/32'] }] },
  });

  it('renders a full mesh for wg0, sorted, with endpoints and keepalive', () => {
    const text = renderWgConf({ privateKey: K('A'), listenPort: 51820, peers: meshPeers(cfg) });
    assert.equal(
      text,
      `[Interface]\nPrivateKey = ${K('A')}\nListenPort = 51820\n\n[Peer]\nPublicKey = ${K('B')}\nAllowedIPs = 172.24.0.2/32\nEndpoint = 10.250.0.3:51820\nPersistentKeepalive = 25\n\n[Peer]\nPublicKey = ${K('C')}\nAllowedIPs = 172.24.0.3/32\nEndpoint = 10.250.0.4:51820\nPersistentKeepalive = 25\n`,
    );
  });

  it('renders users on wg1 without endpoints, each limited to its own /32', () => {
    const text = renderWgConf({ privateKey: K('A'), listenPort: 51821, peers: userPeers(cfg) });
    assert.match(text, /AllowedIPs = 172\.24\.201\.1\/32\n$/);
    assert.doesNotMatch(text, /Endpoint/);
  });

  it('the same desired state renders the same bytes whatever the peer order', () => {
    fc.assert(
      fc.property(fc.shuffledSubarray(['A', 'B', 'C', 'D', 'E', 'F'].map(K), { minLength: 1 }), (keys) => {
        const peers = keys.map((k, i) => ({ publicKey: k, allowedIps: [`172.24.0.${i + 2}/32`] }));
        const a = renderWgConf({ privateKey: K('Z'), listenPort: 1, peers });
        const b = renderWgConf({ privateKey: K('Z'), listenPort: 1, peers: [...peers].reverse() });
        return a === b;
      }),
    );
  });

  it('plans only the ip changes that are missing', () => {
    const want = { ifname: 'wg0', address: '172.24.0.1/32', routes: ['172.24.0.0/16'] };
    assert.deepEqual(planLink({ exists: true, up: false, addresses: [], routes: [] }, want), [
      ['address', 'add', '172.24.0.1/32', 'dev', 'wg0'],
      ['link', 'set', 'dev', 'wg0', 'up'],
      ['route', 'replace', '172.24.0.0/16', 'dev', 'wg0'],
    ]);
    assert.deepEqual(planLink({ exists: true, up: true, addresses: ['172.24.0.1/32'], routes: ['172.24.0.0/16'] }, want), []);
    assert.deepEqual(planLink({ exists: true, up: true, addresses: ['172.24.0.9/32', '172.24.0.1/32'], routes: ['172.24.0.0/16'] }, want), [['address', 'del', '172.24.0.9/32', 'dev', 'wg0']]);
  });

  it('parses ip -j output', () => {
    const s = parseLinkState(
      JSON.stringify([{ ifname: 'wg0', flags: ['POINTOPOINT', 'NOARP', 'UP', 'LOWER_UP'], addr_info: [{ family: 'inet', local: '172.24.0.1', prefixlen: 32 }, { family: 'inet6', local: 'fe80::1', prefixlen: 64 }] }]),
      JSON.stringify([{ dst: '172.24.0.0/16', dev: 'wg0' }, { dst: '172.24.0.7', dev: 'wg0' }]),
    );
    assert.deepEqual(s, { exists: true, up: true, addresses: ['172.24.0.1/32'], routes: ['172.24.0.0/16', '172.24.0.7/32'] });
  });

  it('parses wg show dump without ever returning the private key', () => {
    const dump = `${K('P')}\t${K('Q')}\t51820\toff\n${K('B')}\t(none)\t10.250.0.3:51820\t172.24.0.2/32\t1700000000\t100\t200\t25\n${K('C')}\t(none)\t(none)\t172.24.0.3/32,10.0.0.0/8\t0\t0\t0\toff\n`;
    const d = parseWgDump(dump)!;
    assert.equal(d.publicKey, K('Q'));
    assert.equal(d.listenPort, 51820);
    assert.doesNotMatch(JSON.stringify(d), new RegExp(K('P').slice(0, 20)));
    assert.deepEqual(d.peers[1], { publicKey: K('C'), endpoint: null, allowedIps: ['172.24.0.3/32', '10.0.0.0/8'], latestHandshake: 0, rxBytes: 0, txBytes: 0 });
  });

  it('refuses malformed keys and endpoints from the wire', () => {
    assert.ok(WG_KEY_RE.test('YAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk='));
    assert.ok(!vpnConfigSchema.safeParse({ ...cfg, wg0: { ...cfg.wg0, peers: [{ nid: 'x', publicKey: 'nope', endpoint: null, allowedIps: ['1.2.3.4/32'] }] } }).success);
    assert.ok(!vpnConfigSchema.safeParse({ ...cfg, wg0: { ...cfg.wg0, peers: [{ nid: 'x', publicKey: K('B'), endpoint: 'a b:1\nPostUp', allowedIps: ['1.2.3.4/32'] }] } }).success);
  });
});
