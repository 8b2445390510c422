/**
 * The heartbeat body checked by hand (control-plane/http/heartbeat-body.ts) means what
 * heartbeatRequestSchema makes of the same JSON: the same value for every body the schema accepts,
 * and the same refusal (the schema's own ZodError) for every body it refuses, hostile ones included.
 * And the shapes agents send every 5 s (the runtime's and the load generators') take the hand path.
 */
import assert from 'node:assert/strict';
import { z } from 'zod';
import { heartbeatRequestSchema } from '../../common/wire.ts';
import { parseHeartbeat, plainHeartbeat } from '../../control-plane/http/heartbeat-body.ts';

type Outcome = { ok: true; value: unknown } | { ok: false; issues: unknown };

function viaSchema(json: string): Outcome {
  const r = heartbeatRequestSchema.safeParse(JSON.parse(json));
  return r.success ? { ok: true, value: r.data } : { ok: false, issues: r.error.issues };
}

function viaRoute(json: string): Outcome {
  try {
    return { ok: true, value: parseHeartbeat(JSON.parse(json)) };
  } catch (err) {
    assert.ok(err instanceof z.ZodError, `not a ZodError: ${String(err)}`);
    return { ok: false, issues: err.issues };
  }
}

/** What the agents send: the runtime's full beat, its moving-metrics beat, the load generators' beats. */
const AGENT_BODIES = [
  '{"version":"0.1.0","metrics":{"cpuPercent":3.2,"memoryTotalBytes":8340000000,"memoryUsedBytes":2110000000,"diskTotalBytes":100000000000,"diskUsedBytes":31000000000,"load":[0.12,0.2,0.18],"uptimeSeconds":86400,"rssBytes":48000000},"running":[]}',
  '{"running":[],"metrics":{"cpuPercent":3.25,"memoryUsedBytes":2110004096,"load":[0.13,0.2,0.18],"uptimeSeconds":86405,"rssBytes":48001024}}',
  '{"metrics":{"cpuPercent":0,"uptimeSeconds":12}}',
  '{"running":[17,18,4503599627370495]}',
  '{}',
  '{"version":""}',
  `{"version":"${'v'.repeat(64)}"}`,
  '{"metrics":{"cpuPercent":100000,"load":[]}}',
  '{"metrics":{}}',
  '{"metrics":{"memoryUsedBytes":-0}}',
];

/** Bodies the schema refuses, or that only the schema should decide. */
const HOSTILE_BODIES = [
  'null', '[]', '1', '"x"', 'true', '[{"running":[]}]',
  '{"running":null}', '{"running":{}}', '{"running":"1"}', '{"running":[1.5]}', '{"running":["1"]}', '{"running":[null]}',
  '{"running":[9007199254740993]}', '{"running":[-1]}', '{"running":[1e999]}', '{"running":[-1e999]}',
  `{"running":[${Array.from({ length: 1001 }, (_, i) => i).join(',')}]}`,
  `{"running":[${Array.from({ length: 1000 }, (_, i) => i).join(',')}]}`,
  '{"version":1}', '{"version":null}', `{"version":"${'v'.repeat(65)}"}`, '{"version":["0.1.0"]}',
  '{"metrics":null}', '{"metrics":[]}', '{"metrics":[1,2]}', '{"metrics":"x"}',
  '{"metrics":{"cpuPercent":-1}}', '{"metrics":{"cpuPercent":100000.5}}', '{"metrics":{"cpuPercent":1e999}}', '{"metrics":{"cpuPercent":"3"}}',
  '{"metrics":{"cpuPercent":null}}', '{"metrics":{"rssBytes":-1e-300}}', '{"metrics":{"rssBytes":1e308}}', '{"metrics":{"uptimeSeconds":1e999}}',
  '{"metrics":{"load":[1,2,3,4]}}', '{"metrics":{"load":[1,"2"]}}', '{"metrics":{"load":[-1]}}', '{"metrics":{"load":[1e999]}}', '{"metrics":{"load":{}}}',
  '{"metrics":{"load":null}}', '{"metrics":{"other":1}}', '{"metrics":{"__proto__":{"cpuPercent":1}}}', '{"metrics":{"constructor":1}}',
  '{"metrics":{"toString":1}}', '{"metrics":{"hasOwnProperty":1}}',
  '{"__proto__":{"running":[]}}', '{"constructor":{}}', '{"running":[],"extra":1}', '{"vpn":{"publicKey":"x","endpoint":null}}',
  '{"vpn":{"deep":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}',
  '{"vpn":null}', '{"vpn":[]}', '{"vpn":{"n":1e999}}', '{"running":[],"running":"x"}', '{"running":"x","running":[]}',
];

/** A deterministic generator of bodies near the agents' shape: each field valid, off by a little, or of the wrong kind. */
function* mutations(seed: number, count: number): Generator<string> {
  let s = seed;
  const rnd = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const numbers = ['0', '-0', '1', '-1', '3.2', '100000', '100000.0001', '1e999', '-1e999', '9007199254740991', '9007199254740992', '1e308', '-1e-7', '"1"', 'null', 'true', '[]', '{}'];
  const keys = ['cpuPercent', 'memoryTotalBytes', 'memoryUsedBytes', 'diskTotalBytes', 'diskUsedBytes', 'uptimeSeconds', 'rssBytes', 'load', 'Load', '__proto__', 'valueOf'];
  for (let i = 0; i < count; i++) {
    const parts: string[] = [];
    if (rnd() < 0.5) parts.push(`"running":${pick(['[]', '[1,2]', `[${pick(numbers)}]`, pick(numbers)])}`);
    if (rnd() < 0.3) parts.push(`"version":${pick(['"0.1.0"', '""', `"${'x'.repeat(64)}"`, `"${'x'.repeat(65)}"`, '1', 'null'])}`);
    if (rnd() < 0.8) {
      const m: string[] = [];
      const n = Math.floor(rnd() * 5);
      for (let j = 0; j < n; j++) {
        const k = pick(keys);
        const v = k.toLowerCase() === 'load' ? pick(['[]', '[0.1,0.2,0.3]', '[0.1,0.2,0.3,0.4]', `[${pick(numbers)}]`, pick(numbers)]) : pick(numbers);
        m.push(`"${k}":${v}`);
      }
      parts.push(`"metrics":${rnd() < 0.9 ? `{${m.join(',')}}` : pick(numbers)}`);
    }
    if (rnd() < 0.05) parts.push(`"${pick(['vpn', 'extra', 'constructor'])}":${pick(['{}', '{"a":1}', 'null', '1'])}`);
    yield `{${parts.join(',')}}`;
  }
}

describe('heartbeat body (agent API)', () => {
  it('takes the hand path for the bodies agents send, with the value the schema gives', () => {
    for (const json of AGENT_BODIES) {
      assert.notEqual(plainHeartbeat(JSON.parse(json)), undefined, json);
      assert.deepEqual(viaRoute(json), viaSchema(json), json);
      const s = viaSchema(json);
      assert.equal(s.ok, true, `the schema refuses ${json}`);
    }
  });

  it('refuses exactly what the schema refuses, with its issues, and leaves the rest to it', () => {
    let refused = 0;
    for (const json of HOSTILE_BODIES) {
      const s = viaSchema(json);
      if (!s.ok) refused++;
      assert.deepEqual(viaRoute(json), s, json);
    }
    assert.ok(refused > HOSTILE_BODIES.length / 2, `only ${refused} of the hostile bodies are refused: the list lost its point`);
  });

  it('agrees with the schema on 20,000 generated bodies near the agents\' shape', () => {
    let hand = 0;
    let refused = 0;
    for (const json of mutations(18, 20_000)) {
      const s = viaSchema(json);
      assert.deepEqual(viaRoute(json), s, json);
      if (plainHeartbeat(JSON.parse(json)) !== undefined) {
        hand++;
        assert.equal(s.ok, true, `the hand path accepted what the schema refuses: ${json}`);
      }
      if (!s.ok) refused++;
    }
    // Both kinds are well represented, or the comparison proves little.
    assert.ok(hand > 1000 && refused > 1000, `hand path ${hand}, refused ${refused}`);
  });
});
