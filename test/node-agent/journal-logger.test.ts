/**
 * The daemon's logger without pino (node-agent/cli/journal-logger.ts) writes what pino writes with
 * the project's settings (common/logger.ts: the redaction paths, errors under `err`, pid and name):
 * the same calls through both, line for line, `time` aside.
 */
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { REDACT_CENSOR, REDACT_PATHS } from '../../common/logger.ts';
import { journalLogger } from '../../node-agent/cli/journal-logger.ts';

type Log = ReturnType<typeof journalLogger>;

function both(level: string, calls: (log: Log) => void): { ours: Record<string, unknown>[]; pinos: Record<string, unknown>[] } {
  const a: string[] = [];
  const b: string[] = [];
  calls(journalLogger({ name: 'tether-node', level, write: (l) => a.push(l), now: () => 0 }));
  calls(pino({ name: 'tether-node', level, redact: { paths: REDACT_PATHS, censor: REDACT_CENSOR }, base: { pid: process.pid } }, { write: (l: string) => void b.push(l) }));
  const parse = (lines: string[]) =>
    lines.map((l) => {
      assert.ok(l.endsWith('\n') && !l.slice(0, -1).includes('\n'), `one line: ${l}`);
      const o = JSON.parse(l) as Record<string, unknown>;
      delete o.time;
      return o;
    });
  return { ours: parse(a), pinos: parse(b) };
}

describe('node agent: the daemon logger (pino lines without pino)', () => {
  it('writes the same lines as pino: fields, child bindings, messages, levels', () => {
    const { ours, pinos } = both('info', (log) => {
      log.info({ agentId: 'nd-x', servers: ['https://a', 'https://b'], n: 1, ok: true, nothing: null, gone: undefined }, 'node agent started');
      log.info('plain message');
      log.info('formatted %s and %d', 'text', 42);
      log.warn({ retryInMs: 1000 }, 'VPN sync at start failed');
      log.debug({ hidden: 1 }, 'below the level');
      const child = log.child({ slot: 0 }).child({ commandId: 7, type: 'install', attempt: 1 });
      child.info('executing');
      child.error({ status: 'failed' }, 'finished');
      log.fatal({}, 'fatal');
      log.info({ nested: { deep: { list: [1, { a: 'b' }] } } });
    });
    assert.equal(ours.length, 8);
    assert.deepEqual(ours, pinos);
  });

  it('redacts tokens, keys and certificates like pino, without changing the object logged', () => {
    const obj = {
      token: 't0p', bootstrapToken: 'bt', apiKey: 'ak', secret: 's', authorization: 'Bearer x',
      headers: { authorization: 'Bearer y', accept: 'json' }, req: { headers: { authorization: 'Bearer z' } },
      key: 'PRIVATE', keyPem: '-----BEGIN', privateKey: 'pk', cert: 'c', certPem: 'cp', certificate: 'crt', csr: 'csr', caCertificate: 'ca',
      value: 'v', values: { a: 1 }, vars: { b: 2 },
      body: { token: 'nested', key: 'k2', other: 'kept' }, list: [{ token: 'in a list' }],
    };
    const copy = structuredClone(obj);
    const { ours, pinos } = both('info', (log) => log.child({ token: 'bound' }).warn(obj, 'with secrets'));
    assert.deepEqual(obj, copy, 'the logged object is unchanged');
    assert.deepEqual(ours, pinos);
    const line = JSON.stringify(ours);
    for (const secret of ['t0p', 'PRIVATE', '-----BEGIN', 'Bearer', 'nested', '"k2"', 'crt', 'bound']) assert.ok(!line.includes(secret), `${secret} is redacted: ${line}`);
    assert.ok(line.includes('"other":"kept"') && line.includes('"accept":"json"'));
  });

  it('errors under err as pino serializes them: type, message and stack with causes, own properties', () => {
    const cause = new Error('socket hang up');
    const err = Object.assign(new Error('request failed', { cause }), { code: 'ECONNRESET', status: 503 });
    class TetherLikeError extends Error {
      readonly retryable = true;
    }
    const direct = new TetherLikeError('direct');
    const range = new RangeError('with message');
    const { ours, pinos } = both('info', (log) => {
      log.warn({ err, attempt: 2 }, 'poll failed; backing off');
      log.error(direct);
      log.error(range, 'explicit message');
      log.warn({ err: 'not an error' }, 'a string under err');
    });
    assert.deepEqual(ours, pinos);
    const first = ours[0]!.err as { type: string; message: string; stack: string; code: string };
    assert.equal(first.type, 'Error');
    assert.match(first.message, /request failed: socket hang up/);
    assert.match(first.stack, /caused by: Error: socket hang up/);
    assert.equal(first.code, 'ECONNRESET');
  });

  it('a circular object is written (pino writes [Circular]) and the level can be changed', () => {
    const a: Record<string, unknown> = { name: 'a' };
    a.self = a;
    const { ours, pinos } = both('warn', (log) => {
      log.warn({ a }, 'circular');
      log.info('not written at warn');
      assert.equal(log.isLevelEnabled('info'), false);
      assert.equal(log.isLevelEnabled('error'), true);
      log.level = 'info';
      assert.equal(log.level, 'info');
      log.info('written at info');
    });
    assert.deepEqual(ours, pinos);
    assert.equal(ours.length, 2);
  });

  it('silent writes nothing', () => {
    const { ours, pinos } = both('silent', (log) => log.fatal('nothing'));
    assert.deepEqual(ours, []);
    assert.deepEqual(pinos, []);
  });
});
