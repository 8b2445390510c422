/**
 * One hostile tenant (issue 11): an agent, or the holder of one bootstrap token, trying to stall
 * the control plane for everyone or to keep working after its revocation. Each attack is refused
 * with a 4xx, costs bounded work, and leaves other tenants' agents served.
 */
import assert from 'node:assert/strict';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import forge from 'node-forge';
import { ManualClock } from '../../common/clock.ts';
import { HttpError } from '../../common/http-client.ts';
import { AgentClient, bootstrapAgent } from '../../common/agent/agent-client.ts';
import { createCsr, generateKeyPair, type KeyPair } from '../../common/csr.ts';
import type { CommandView } from '../../common/wire.ts';
import { eventually, removeDir, startTestControlPlane, type TestControlPlane } from '../support/control-plane.ts';
import { claimNext } from '../../control-plane/db/claim.ts';

const MANIFEST = { manifests: 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n' };

async function refusal(p: Promise<unknown>): Promise<HttpError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof HttpError, `expected a refusal, got ${err === undefined ? 'success' : String(err)}`);
  return err;
}

/**
 * A CSR carrying the agent's modulus with a random odd public exponent of `bits` bits, signed with
 * the real private key (so the signature has the key's length; it cannot verify). node-forge's
 * verification of it cost seconds of event loop (32,768 bits: about 3 s here, linear in the bits).
 */
function hugeExponentCsr(keys: KeyPair, bits: number): string {
  const priv = forge.pki.privateKeyFromPem(keys.privateKeyPem) as forge.pki.rsa.PrivateKey;
  const e = new forge.jsbn.BigInteger(randomBytes(bits / 8).toString('hex'), 16).or(forge.jsbn.BigInteger.ONE);
  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = forge.pki.setRsaPublicKey(priv.n, e);
  csr.setSubject([{ name: 'commonName', value: 'x' }]);
  csr.sign(priv, forge.md.sha256.create());
  return forge.pki.certificationRequestToPem(csr);
}

/** A well-formed CSR for a P-256 key, signed with ECDSA and labelled `sigOid` (forge cannot make one: built from ASN.1). */
function ecCsr(sigOid: string): string {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const { asn1 } = forge;
  const spki = asn1.fromDer(publicKey.export({ type: 'spki', format: 'der' }).toString('binary'));
  const info = asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.INTEGER, false, '\x00'),
    forge.pki.distinguishedNameToAsn1({ attributes: [{ type: forge.pki.oids.commonName!, value: 'x', valueTagClass: asn1.Type.UTF8 }] } as never),
    spki,
    asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, true, []),
  ]);
  const signature = sign('sha256', Buffer.from(asn1.toDer(info).getBytes(), 'binary'), privateKey);
  const csr = asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
    info,
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OID, false, asn1.oidToDer(sigOid).getBytes())]),
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.BITSTRING, false, `\x00${signature.toString('binary')}`),
  ]);
  const b64 = Buffer.from(asn1.toDer(csr).getBytes(), 'binary').toString('base64');
  return `-----BEGIN CERTIFICATE REQUEST-----\n${b64.replace(/.{64}/g, '$&\n')}\n-----END CERTIFICATE REQUEST-----\n`;
}

/** A valid CSR whose signature is one byte longer than its key can make. */
function longSignatureCsr(keys: KeyPair): string {
  const csr = forge.pki.certificationRequestFromPem(createCsr(keys, 'x'));
  (csr as unknown as { signature: string }).signature += '\x00';
  return forge.pki.certificationRequestToPem(csr);
}

describe('faults: one hostile tenant', function () {
  this.timeout(120_000);

  describe('certificate signing requests', () => {
    let t: TestControlPlane;
    const clients: AgentClient[] = [];
    before(async () => {
      // Renewal at any time here: these tests are about the CSR checks behind it.
      t = await startTestControlPlane({ renewWithinFraction: 1, bootstrapFailuresPerMinute: 1000 });
      await t.createCluster('victim');
      await t.createCluster('attacker');
    });
    after(async () => {
      for (const c of clients) c.close();
      await t?.close();
      if (t) removeDir(t.dataDir);
    });

    it('refuses a huge public exponent at bootstrap and renewal (400 invalid_csr, before any signature check); another tenant keeps its heartbeats', async () => {
      const victim = await t.agent('victim', 'cluster-agent');
      const attacker = await t.agent('attacker', 'cluster-agent');
      clients.push(victim.client, attacker.client);
      // 36,864 bits: the largest round size whose bootstrap body stays under the 8 KiB bootstrap limit
      // (a larger one is refused 413 before it is parsed), so the key check itself is what refuses it.
      const hostile = hugeExponentCsr(attacker.keys, 36_864);
      const tokens = [await t.bootstrapToken('attacker', 'cluster-agent'), await t.bootstrapToken('attacker', 'cluster-agent')];

      const loop = monitorEventLoopDelay({ resolution: 10 });
      const beats: number[] = [];
      let attacking = true;
      loop.enable();
      const heartbeats = (async () => {
        while (attacking) {
          const t0 = performance.now();
          await victim.client.heartbeat({ running: [] });
          beats.push(performance.now() - t0);
          await new Promise((r) => setTimeout(r, 20));
        }
      })();
      const refusals = await Promise.all([
        ...tokens.map((token) => refusal(t.admin.request('POST', '/v1/bootstrap', { token, csr: hostile }))),
        refusal(attacker.client.renew(hostile)),
        refusal(attacker.client.renew(hostile)),
      ]).finally(() => (attacking = false));
      await heartbeats;
      loop.disable();

      // The two renewals race: when the first is still waiting on the database (PostgreSQL: a
      // round trip) the second is refused 429 renewal_in_progress, before any CSR work too; at
      // least one of them reaches the key check.
      const renewals = refusals.slice(tokens.length);
      assert.ok(renewals.some((err) => err.status === 400), 'a renewal reached the key check');
      for (const err of refusals) {
        if (renewals.includes(err) && err.status === 429 && err.code === 'renewal_in_progress') continue;
        assert.equal(err.status, 400, `${err.code}: ${err.message}`);
        assert.equal(err.code, 'invalid_csr', err.message);
        // Refused for its exponent, i.e. by the key check, not by a signature check that ran.
        assert.match(err.message, /public exponent must be 65537/);
      }
      // Each of those requests cost node-forge about 5 s of event loop here; now they cost a
      // parse (well under a millisecond). The bound is three orders of magnitude above that, and
      // below one such verification even on a much faster machine.
      const maxDelayMs = loop.max / 1e6;
      assert.ok(maxDelayMs < 2000, `the event loop stalled for ${maxDelayMs.toFixed(0)} ms`);
      assert.ok(beats.length > 0, 'the victim heartbeated during the attack');
      assert.ok(Math.max(...beats) < 2000, `a victim heartbeat took ${Math.max(...beats).toFixed(0)} ms`);
      // The tokens were not spent by the refused requests.
      const ok = await bootstrapAgent({ url: t.url, caPem: t.caPem, token: tokens[0]!, keys: generateKeyPair() });
      assert.equal(ok.cid, 'attacker');
    });

    it('refuses a CSR whose signature is longer than its key with 400, not 500', async () => {
      const token = await t.bootstrapToken('attacker', 'cluster-agent');
      const keys = generateKeyPair();
      const err = await refusal(t.admin.request('POST', '/v1/bootstrap', { token, csr: longSignatureCsr(keys) }));
      assert.equal(err.status, 400, `${err.code}: ${err.message}`);
      assert.equal(err.code, 'invalid_csr');
      assert.match(err.message, /signature is 257 bytes/);
    });

    it('refuses other key shapes before any signature check: EC keys, short RSA moduli, garbage', async () => {
      const attacker = await t.agent('attacker', 'cluster-agent');
      clients.push(attacker.client);
      const { privateKey } = await import('node:crypto').then((c) => c.generateKeyPairSync('rsa', { modulusLength: 1024 }));
      const short = { privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, publicKeyPem: '' };
      short.publicKeyPem = forge.pki.publicKeyToPem(forge.pki.setRsaPublicKey((forge.pki.privateKeyFromPem(short.privateKeyPem) as forge.pki.rsa.PrivateKey).n, new forge.jsbn.BigInteger('65537')));
      const cases: [string, RegExp][] = [
        [ecCsr('1.2.840.10045.4.3.2'), /signature algorithm must be RSA/], // ecdsa-with-SHA256
        [ecCsr('1.2.840.113549.1.1.11'), /public key must be RSA/], // an EC key claiming an RSA signature
        [createCsr(short, 'x'), /modulus must be 2048 to 4096 bits \(got 1024\)/],
        ['-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n', /not DER|malformed/],
        ['not a csr', /not a PEM/],
      ];
      for (const [csr, why] of cases) {
        const err = await refusal(attacker.client.renew(csr));
        assert.equal(err.status, 400, `${err.code}: ${err.message}`);
        assert.equal(err.code, 'invalid_csr');
        assert.match(err.message, why);
      }
    });
  });

  it('counts a bootstrap refused for its CSR against the failure rate limit', async () => {
    const t = await startTestControlPlane({ bootstrapFailuresPerMinute: 3 });
    try {
      await t.createCluster('gamma');
      const token = await t.bootstrapToken('gamma', 'cluster-agent');
      for (let i = 0; i < 3; i++) {
        const err = await refusal(t.admin.request('POST', '/v1/bootstrap', { token, csr: longSignatureCsr(generateKeyPair()) }));
        assert.equal(err.code, 'invalid_csr');
      }
      const limited = await refusal(bootstrapAgent({ url: t.url, caPem: t.caPem, token, keys: generateKeyPair() }));
      assert.equal(limited.status, 429);
      assert.equal(limited.code, 'rate_limited');
    } finally {
      await t.close();
      removeDir(t.dataDir);
    }
  });

  describe('certificate renewal', () => {
    const clock = new ManualClock();
    let t: TestControlPlane;
    before(async () => {
      t = await startTestControlPlane({}, { clock });
      await t.createCluster('alpha');
    });
    after(async () => {
      await t?.close();
      if (t) removeDir(t.dataDir);
    });

    it('refuses renewing a certificate with more than half its life left (429 renewal_too_early), and one renewal at a time', async () => {
      const a = await t.agent('alpha', 'cluster-agent');
      try {
        const csr = createCsr(a.keys, 'renew');
        const early = await refusal(a.client.renew(csr));
        assert.equal(early.status, 429);
        assert.equal(early.code, 'renewal_too_early');
        assert.match(early.message, /renewal opens at/);

        // Past half of its 30 days: a storm of renewals gets exactly one certificate.
        clock.advance(16 * 86400_000);
        const storm = await Promise.all(Array.from({ length: 8 }, () => a.client.renew(csr).then((r) => r, (e: unknown) => e)));
        const issued = storm.filter((r) => !(r instanceof Error));
        assert.equal(issued.length, 1, `renewals issued: ${issued.length}`);
        for (const r of storm.filter((x) => x instanceof Error)) {
          assert.ok(r instanceof HttpError && r.status === 429 && ['renewal_in_progress', 'renewal_too_early'].includes(r.code), String(r));
        }
        // The new certificate is the newest: renewing again right away is too early.
        const again = await refusal(a.client.renew(csr));
        assert.equal(again.code, 'renewal_too_early');
      } finally {
        clock.advance(-16 * 86400_000);
        a.client.close();
      }
    });
  });

  describe('revocation', () => {
    let t: TestControlPlane;
    before(async () => {
      t = await startTestControlPlane({ leaseSeconds: 60 });
      await t.createCluster('rho');
      await t.createCluster('sigma');
    });
    after(async () => {
      await t?.close();
      if (t) removeDir(t.dataDir);
    });
    const jobs = async (cluster = 'rho') => (await t.admin.request<{ commands: CommandView[] }>('GET', `/v1/commands?cluster=${cluster}`)).body.commands;

    it('ends a held poll at once (403), closes the connection, and nothing submitted afterwards is claimed by it', async () => {
      const other = await t.agent('rho', 'node', { nodeName: 'n2' }); // another agent: its connection stays
      const r = await t.agent('rho', 'cluster-agent');
      try {
        await other.client.heartbeat({ running: [] });
        const heldBefore = t.cp.dispatcher.held;
        const poll = r.client.poll(60).then((p) => p, (e: unknown) => e);
        await eventually(() => t.cp.dispatcher.held > heldBefore, 10_000, 'the poll to be held');
        const h2Before = t.cp.connections().http2;

        await t.admin.request('POST', `/v1/agents/${r.identity.agentId}/revoke`);
        // Answered while its 60 s wait has most of its time left: the revocation ended it.
        const answer = await Promise.race([poll, new Promise((res) => setTimeout(() => res('still held'), 20_000))]);
        assert.ok(answer instanceof HttpError, `the held poll answered ${JSON.stringify(answer)}`);
        assert.equal(answer.status, 403);
        assert.equal(answer.code, 'certificate_revoked');
        await eventually(() => t.cp.connections().http2 < h2Before, 10_000, 'the revoked agent\'s HTTP/2 connection to close');

        const sub = await t.admin.request<{ id: number }>('POST', '/v1/commands', { target: { cluster: 'rho' }, type: 'manifest', spec: MANIFEST });
        const late = await refusal(r.client.poll(1));
        assert.equal(late.code, 'certificate_revoked');
        const job = (await jobs()).find((j) => j.id === sub.body.id)!;
        assert.equal(job.state, 'queued', 'the command waits for an agent that is not revoked');
        assert.equal(job.claimedBy, null);
        // The claim itself re-checks the agent (a poll authenticated just before the revocation
        // reaches it): the revoked agent's claim takes nothing though a command is queued.
        const taken = await claimNext(t.cp.db, { aid: t.aid, cid: 'rho', nid: null }, { agentId: r.identity.agentId, leaseId: 'revoked-claim', leaseExpiresAt: Date.now() + 60_000, now: Date.now() });
        assert.equal(taken, undefined, 'a revoked agent claimed a command');
        await other.client.heartbeat({ running: [] }); // the other agent is still served
      } finally {
        r.client.close();
        other.client.close();
      }
    });

    it('requeues at once a command the revoked agent held', async () => {
      const r = await t.agent('sigma', 'cluster-agent');
      try {
        await t.admin.request('POST', '/v1/commands', { target: { cluster: 'sigma' }, type: 'manifest', spec: MANIFEST });
        const mine = (await r.client.poll(5)).command;
        assert.ok(mine, 'the agent claimed the queued command');
        await t.admin.request('POST', `/v1/agents/${r.identity.agentId}/revoke`);
        // With a 60 s lease, before: running and claimed by the revoked agent until the lease ran out.
        const job = await eventually(async () => (await jobs('sigma')).find((j) => j.id === mine.id && j.state === 'queued'), 5_000, 'the command to be queued again');
        assert.equal(job.claimedBy, null);
        const stale = await refusal(r.client.report(mine.id, { leaseId: mine.leaseId, outcome: 'succeeded' }));
        assert.equal(stale.status, 403);
      } finally {
        r.client.close();
      }
    });
  });
});
