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
import { runCli } from '../support/cli.ts';
import { claimNext } from '../../control-plane/db/claim.ts';
import { join } from 'node:path';
import Database from 'better-sqlite3';

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
      const hostile = hugeExponentCsr(attacker.keys, 49_152);
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

      for (const err of refusals) {
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
  describe('job logs', () => {
    let t: TestControlPlane;
    before(async () => {
      t = await startTestControlPlane({ logBytesPerCommand: 4096, logBytesPerAgentPerSecond: 4096 });
      await t.createCluster('logs');
      await t.createCluster('quiet');
    });
    after(async () => {
      await t?.close();
      if (t) removeDir(t.dataDir);
    });
    const claim = async (cluster: string) => {
      const a = await t.agent(cluster, 'cluster-agent');
      const { body } = await t.admin.request<{ id: number }>('POST', '/v1/commands', { target: { cluster }, type: 'manifest', spec: MANIFEST });
      const c = (await a.client.poll(5)).command;
      assert.equal(c?.id, body.id);
      return { a, c: c! };
    };
    const storedLines = async (id: number) => (await t.admin.request<{ lines: { stream: string; text: string }[] }>('GET', `/v1/commands/${id}/logs`)).body.lines;

    it('caps the bytes stored per command: the log ends with one marker line saying how much was dropped', async () => {
      const { a, c } = await claim('logs');
      try {
        const line = (i: number) => ({ stream: 'stdout' as const, text: `${String(i).padStart(4, '0')} ${'x'.repeat(95)}` }); // 100 bytes
        let sent = 0;
        for (let batch = 0; batch < 6; batch++) {
          // 20 lines (2,000 bytes) a batch; the quota (4 KiB/s, 32 KiB burst) lets six through.
          await a.client.logs(c.id, c.leaseId, Array.from({ length: 20 }, (_, i) => line(sent + i)));
          sent += 20;
        }
        const lines = await storedLines(c.id);
        const markers = lines.filter((l) => /log truncated/.test(l.text));
        assert.equal(markers.length, 1, 'one marker line');
        assert.equal(lines.at(-1), markers[0], 'the marker ends the log');
        assert.equal(markers[0]!.stream, 'system');
        const kept = lines.slice(0, -1);
        assert.equal(kept.length, 40, 'lines are kept in order up to the cap (40 × 100 bytes = 4,000 ≤ 4,096)');
        assert.deepEqual(kept.map((l) => l.text.slice(0, 4)), Array.from({ length: 40 }, (_, i) => String(i).padStart(4, '0')));
        assert.match(markers[0]!.text, new RegExp(`truncated at 4096 bytes: ${(sent - 40) * 100} bytes in ${sent - 40} lines dropped`));
      } finally {
        a.client.close();
      }
    });

    it('rate-limits log writes per agent (429 rate_limited); another agent writes on', async () => {
      const { a, c } = await claim('logs');
      const { a: b, c: cb } = await claim('quiet');
      try {
        const big = Array.from({ length: 400 }, () => ({ stream: 'stdout' as const, text: 'y'.repeat(100) })); // 52 KB with overhead > 32 KiB burst
        const err = await refusal(a.client.logs(c.id, c.leaseId, big));
        assert.equal(err.status, 429);
        assert.equal(err.code, 'rate_limited');
        assert.equal((await storedLines(c.id)).length, 0, 'nothing of the refused request was stored');
        await b.client.logs(cb.id, cb.leaseId, [{ stream: 'stdout', text: 'still here' }]);
        assert.deepEqual((await storedLines(cb.id)).map((l) => l.text), ['still here']);
      } finally {
        a.client.close();
        b.client.close();
      }
    });
  });

  describe('outputs and lists', () => {
    let t: TestControlPlane;
    before(async () => {
      t = await startTestControlPlane({});
      await t.createCluster('outs');
    });
    after(async () => {
      await t?.close();
      if (t) removeDir(t.dataDir);
    });

    it('refuses outputs above the cap with 413 naming the field; the attempt can still report', async () => {
      const a = await t.agent('outs', 'cluster-agent');
      try {
        const { body } = await t.admin.request<{ id: number }>('POST', '/v1/commands', { target: { cluster: 'outs' }, type: 'manifest', spec: MANIFEST });
        const c = (await a.client.poll(5)).command!;
        assert.equal(c.id, body.id);
        const err = await refusal(a.client.report(c.id, { leaseId: c.leaseId, outcome: 'succeeded', outputs: { a: 'z'.repeat(160 * 1024), b: 'z'.repeat(160 * 1024) } }));
        assert.equal(err.status, 413);
        assert.equal(err.code, 'outputs_too_large');
        assert.match(err.message, /^outputs is \d+ bytes/);
        await a.client.report(c.id, { leaseId: c.leaseId, outcome: 'succeeded', outputs: { small: 1 } });
      } finally {
        a.client.close();
      }
    });

    it('caps limit on GET /v1/commands (400 naming limit) and leaves outputs out of lists, not out of the job view or `tether jobs list`', async () => {
      const over = await refusal(t.admin.request('GET', '/v1/commands?limit=201'));
      assert.equal(over.status, 400);
      assert.match(over.message, /^limit: /);
      const list = (await t.admin.request<{ commands: Record<string, unknown>[] }>('GET', '/v1/commands?limit=200')).body.commands;
      assert.ok(list.length >= 1);
      for (const j of list) assert.ok(!('outputs' in j), `job ${String(j.id)} in a list carries outputs`);
      const done = list.find((j) => j.state === 'succeeded')!;
      const one = (await t.admin.request<CommandView>('GET', `/v1/commands/${String(done.id)}`)).body;
      assert.deepEqual(one.outputs, { small: 1 });
      const env = { TETHER_URL: t.url, TETHER_CA_FILE: join(t.dataDir, 'ca.crt'), TETHER_API_KEY: t.adminToken, HOME: t.dataDir };
      const cli = await runCli(['jobs', 'list'], env);
      assert.equal(cli.code, 0, cli.stderr);
      assert.match(cli.stdout, new RegExp(`^${String(done.id)}\\s+manifest\\s+outs\\s+succeeded`, 'm'));
      const shown = await runCli(['jobs', 'show', String(done.id)], env);
      assert.equal(shown.code, 0, shown.stderr);
      assert.match(shown.stdout, /outputs\s+\{"small":1\}/);
    });
  });

  describe('retention', () => {
    const clock = new ManualClock();
    let t: TestControlPlane;
    before(async () => {
      t = await startTestControlPlane({ retentionSeconds: 3600 }, { clock });
      await t.createCluster('keep');
    });
    after(async () => {
      await t?.close();
      if (t) removeDir(t.dataDir);
    });
    const rows = (sql: string, ...params: unknown[]) => {
      const db = new Database(join(t.dataDir, 'tether.db'), { readonly: true, fileMustExist: true });
      try {
        return db.prepare(sql).all(...params) as Record<string, number>[];
      } finally {
        db.close();
      }
    };

    it('deletes finished commands and their logs past the retention, in batches, and keeps the rest', async () => {
      const a = await t.agent('keep', 'cluster-agent');
      try {
        const finished: number[] = [];
        for (let i = 0; i < 3; i++) {
          await t.admin.request('POST', '/v1/commands', { target: { cluster: 'keep' }, type: 'manifest', spec: MANIFEST });
          const c = (await a.client.poll(5)).command!;
          await a.client.logs(c.id, c.leaseId, Array.from({ length: 500 }, (_, j) => ({ stream: 'stdout' as const, text: `line ${j}` })));
          await a.client.report(c.id, { leaseId: c.leaseId, outcome: 'succeeded' });
          finished.push(c.id);
        }
        const queued = (await t.admin.request<{ id: number }>('POST', '/v1/commands', { target: { cluster: 'keep' }, type: 'manifest', spec: MANIFEST })).body.id;
        assert.equal((await t.cp.retention.sweep()).commands, 0, 'nothing is old enough yet');

        clock.advance(2 * 3600_000);
        const swept = await t.cp.retention.sweep();
        assert.deepEqual(swept, { commands: 3, lines: 1500 });
        for (const id of finished) assert.equal((await refusal(t.admin.request('GET', `/v1/commands/${id}`))).status, 404);
        assert.equal(rows('SELECT count(*) AS n FROM command_logs')[0]!.n, 0, 'their logs are gone');
        assert.equal((await t.admin.request<CommandView>('GET', `/v1/commands/${queued}`)).body.state, 'queued', 'an unfinished command is kept');
      } finally {
        clock.advance(-2 * 3600_000);
        a.client.close();
      }
    });

    it('`tether server --retention` takes a duration and refuses anything else', async () => {
      const r = await runCli(['server', '--data-dir', join(t.dataDir, 'never'), '--listen', '127.0.0.1:1', '--retention', 'forever'], {});
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /--retention must be a duration like 30d/);
    });
  });
});
