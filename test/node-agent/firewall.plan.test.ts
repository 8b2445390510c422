/** The wg1 hub-and-spoke nftables table (pure rendering), and that nft itself accepts it (check mode). */
import assert from 'node:assert/strict';
import { FIREWALL_TABLE, renderFirewall } from '../../node-agent/vpn/firewall.plan.ts';
import { which } from '../../node-agent/process/which.ts';
import { spawnSync } from 'node:child_process';
import { isRoot } from './support.ts';

describe('node agent: wg1 hub-and-spoke firewall (rendering)', () => {
  const script = renderFirewall({ wg1Interface: 'wg1', wg1Network: '172.24.200.0/21' });

  it('replaces its own table as a whole, in one transaction, and drops user-to-user forwarding only', () => {
    assert.equal(FIREWALL_TABLE, 'tether_vpn');
    assert.equal(
      script,
      [
        'table inet tether_vpn',
        'delete table inet tether_vpn',
        'table inet tether_vpn {',
        '\tchain forward {',
        '\t\ttype filter hook forward priority filter; policy accept;',
        '\t\tiifname "wg1" oifname "wg1" counter drop comment "wg1 users never reach each other through this node"',
        '\t\toifname "wg1" ip saddr 172.24.200.0/21 counter drop comment "nor through the mesh"',
        '\t}',
        '}',
        '',
      ].join('\n'),
    );
    assert.doesNotMatch(script, /flush ruleset|hook input|hook output/, 'nothing but its own forward chain');
    assert.equal(renderFirewall({ wg1Interface: 'wg1', wg1Network: '172.24.200.0/21' }), script, 'the same input renders the same table');
  });

  it('refuses an interface name or network that could change the script', () => {
    for (const wg1Interface of ['wg1" accept', 'wg1\n', '', 'a'.repeat(16), 'wg 1']) assert.throws(() => renderFirewall({ wg1Interface, wg1Network: '172.24.200.0/21' }), /interface/);
    for (const wg1Network of ['172.24.200.0/21; flush ruleset', '0/0', '300.1.1.1/8', '172.24.200.0/33', '']) assert.throws(() => renderFirewall({ wg1Interface: 'wg1', wg1Network }), /network/);
  });

  it('is accepted by nft (check mode, nothing loaded)', function () {
    if (!isRoot() || !which('nft')) {
      console.log('      skipped: needs root and nft (run test/node-agent/setup.sh as root)');
      this.skip();
    }
    const r = spawnSync('nft', ['-c', '-f', '-'], { input: script, encoding: 'utf8', timeout: 10_000 });
    assert.equal(r.status, 0, r.stderr);
  });
});
