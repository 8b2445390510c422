/**
 * The WireGuard userspace API parser (pure), on an answer captured from a real wireguard-go
 * (v0.0.20220316, Debian) interface with three peers, one after a handshake and traffic, one with
 * an IPv6 endpoint and no allowed IPs, one with neither, and the `wg show dump` of the same
 * interface taken right after (throwaway keys of a test interface that no longer exists).
 */
import assert from 'node:assert/strict';
import { MAX_LINE_BYTES, MAX_UAPI_BYTES, UapiParser, parseUapi } from '../../node-agent/vpn/wireguard.uapi.parse.ts';
import { parseWgDump } from '../../node-agent/vpn/wireguard.render.ts';
import { publicKeyOf } from '../../node-agent/vpn/wireguard.keys.ts';

const CAPTURED_UAPI = "private_key=e8e728a6440e4c157e1038751a239da6de87f21b138b97943c1b32e1b4488f5c\nlisten_port=51901\npublic_key=a46837e508bf77111c21933b9f6d2cb2115efed6cb21c65015f52c110271dd24\npreshared_key=7e582d916b74ac402f5b3fa8b3ca6a2adcc318859184c5617ea19739e7e7c4d2\nprotocol_version=1\nendpoint=10.77.0.2:51902\nlast_handshake_time_sec=1796069111\nlast_handshake_time_nsec=758614305\ntx_bytes=4168\nrx_bytes=213480\npersistent_keepalive_interval=25\nallowed_ip=10.88.0.2/32\nallowed_ip=fd00::2/128\npublic_key=f47f0db69d7ef09681f03b4bfcc1b4712059429071d8d79c2941e345b081cd5f\npreshared_key=0000000000000000000000000000000000000000000000000000000000000000\nprotocol_version=1\nlast_handshake_time_sec=0\nlast_handshake_time_nsec=0\ntx_bytes=0\nrx_bytes=0\npersistent_keepalive_interval=0\nallowed_ip=10.88.0.9/32\npublic_key=0354c4828c4488d164898b3cee0884b39ebf5006e0ba7157784d20486a804333\npreshared_key=0000000000000000000000000000000000000000000000000000000000000000\nprotocol_version=1\nendpoint=[fd00::5]:1234\nlast_handshake_time_sec=0\nlast_handshake_time_nsec=0\ntx_bytes=0\nrx_bytes=0\npersistent_keepalive_interval=0\nerrno=0\n\n";

const CAPTURED_DUMP = "6OcopkQOTBV+EDh1GiOdpt6H8hsTi5eUPBsy4bRIj1w=\tnBCRtABFCxFhxKL07iT0oWDpY2nYO/CyJwWRSWA3JFg=\t51901\toff\nA1TEgoxEiNFkiYs87giEs56/UAbgunFXeE0gSGqAQzM=\t(none)\t[fd00::5]:1234\t(none)\t0\t0\t0\toff\npGg35Qi/dxEcIZM7n20sshFe/tbLIcZQFfUsEQJx3SQ=\tflgtkWt0rEAvWz+os8pqKtzDGIWRhMVhfqGXOefnxNI=\t10.77.0.2:51902\t10.88.0.2/32,fd00::2/128\t1796069111\t213480\t4168\t25\n9H8Ntp1+8JaB8DtL/MG0cSBZQpBx2NecKUHjRbCBzV8=\t(none)\t(none)\t10.88.0.9/32\t0\t0\t0\toff\n";

const PRIVATE_HEX = /^private_key=(.*)$/m.exec(CAPTURED_UAPI)![1]!;
const PSK_HEX = /^preshared_key=(7e.*)$/m.exec(CAPTURED_UAPI)![1]!;

function ok(r: ReturnType<typeof parseUapi>) {
  assert.ok(r.done && r.ok, `not parsed: ${JSON.stringify(r)}`);
  return r.device;
}

describe('node agent: WireGuard UAPI parsing', () => {
  it('reads what `wg show dump` shows of the same interface: listen port and every peer', () => {
    const d = ok(parseUapi(Buffer.from(CAPTURED_UAPI)));
    const dump = parseWgDump(CAPTURED_DUMP)!;
    assert.equal(d.listenPort, dump.listenPort);
    const byKey = <T extends { publicKey: string }>(ps: T[]) => [...ps].sort((a, b) => (a.publicKey < b.publicKey ? -1 : 1));
    assert.deepEqual(byKey(d.peers), byKey(dump.peers));
    assert.equal(d.peers.length, 3);
    const active = d.peers.find((p) => p.endpoint === '10.77.0.2:51902')!;
    assert.deepEqual(active.allowedIps, ['10.88.0.2/32', 'fd00::2/128']);
    assert.ok(active.latestHandshake > 1.7e9 && active.rxBytes > 200_000 && active.txBytes > 0);
    assert.equal(d.peers.find((p) => p.endpoint === '[fd00::5]:1234')!.allowedIps.length, 0);
  });

  it('never reads the private or preshared keys, and zeroes every byte it consumed', () => {
    const input = Buffer.from(CAPTURED_UAPI);
    const d = ok(parseUapi(input));
    const out = JSON.stringify(d);
    for (const secret of [PRIVATE_HEX, PSK_HEX]) {
      assert.ok(!out.includes(secret) && !out.includes(Buffer.from(secret, 'hex').toString('base64')), 'a secret in the result');
    }
    assert.ok(input.every((b) => b === 0), 'the input still holds bytes of the answer');
  });

  it('gives the same result fed one byte at a time (a line split across reads)', () => {
    const whole = ok(parseUapi(Buffer.from(CAPTURED_UAPI)));
    const p = new UapiParser();
    const bytes = Buffer.from(CAPTURED_UAPI);
    let r: ReturnType<UapiParser['push']> = { done: false };
    for (let i = 0; i < bytes.length && !r.done; i++) r = p.push(Buffer.from([bytes[i]!]));
    assert.deepEqual(ok(r), whole);
  });

  it('computes the interface public key from its private key as `wg pubkey` does', () => {
    const [priv, pub] = CAPTURED_DUMP.split('\n')[0]!.split('\t');
    assert.equal(Buffer.from(priv!, 'base64').toString('hex'), PRIVATE_HEX);
    assert.equal(publicKeyOf(priv!), pub);
    assert.throws(() => publicKeyOf('c2hvcnQ='));
  });

  it('refuses an error, a truncated answer, bad keys and oversized input', () => {
    const fail = (r: ReturnType<typeof parseUapi>, re: RegExp) => {
      assert.ok(r.done && !r.ok, JSON.stringify(r));
      assert.match(r.error, re);
    };
    fail(parseUapi(Buffer.from('errno=19\n\n')), /errno=19/);
    fail(parseUapi(Buffer.from(CAPTURED_UAPI.slice(0, 200))), /ended before/);
    fail(parseUapi(Buffer.from('listen_port=1\n\n')), /before errno/);
    fail(parseUapi(Buffer.from('public_key=zz\nerrno=0\n\n')), /public_key/);
    fail(parseUapi(Buffer.from('garbage\nerrno=0\n\n')), /key=value/);
    fail(parseUapi(Buffer.from(`endpoint=${'1'.repeat(MAX_LINE_BYTES + 1)}`)), /longer than/);
    const p = new UapiParser();
    const line = Buffer.from(`allowed_ip=${'1'.repeat(1000)}\n`);
    let r: ReturnType<UapiParser['push']> = { done: false };
    for (let n = 0; n <= MAX_UAPI_BYTES / line.length + 1 && !r.done; n++) r = p.push(Buffer.from(line));
    fail(r, /exceeds/);
    // After the end, nothing more is read.
    const q = new UapiParser();
    ok(q.push(Buffer.from('listen_port=7\nerrno=0\n\nlisten_port=8\n')));
    assert.equal(ok(q.push(Buffer.from('errno=0\n\n'))).listenPort, 7);
  });
});
