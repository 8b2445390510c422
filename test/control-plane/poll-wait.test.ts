/**
 * The poll's `wait` read on its fast path (agent.routes.ts pollWaitSeconds) means what pollQuery
 * makes of the same query string: the same seconds, and the same refusals (a ZodError, answered
 * 400 invalid_request) for what pollQuery refuses.
 */
import assert from 'node:assert/strict';
import { z } from 'zod';
import { pollQuery, pollWaitSeconds } from '../../control-plane/http/agent.routes.ts';

function viaSchema(search: string): number | undefined | 'refused' {
  try {
    return pollQuery.parse(Object.fromEntries(new URLSearchParams(search))).wait;
  } catch (err) {
    assert.ok(err instanceof z.ZodError);
    return 'refused';
  }
}

function viaFastPath(search: string): number | undefined | 'refused' {
  try {
    return pollWaitSeconds(search);
  } catch (err) {
    assert.ok(err instanceof z.ZodError, `not a ZodError: ${String(err)}`);
    return 'refused';
  }
}

describe('poll wait query (agent API)', () => {
  const cases: [string, number | undefined | 'refused'][] = [
    ['', undefined],
    ['wait=0', 0],
    ['wait=25', 25],
    ['wait=007', 7],
    ['wait=120', 120],
    ['wait=121', 'refused'],
    ['wait=999', 'refused'],
    ['wait=1000', 'refused'],
    ['wait=-1', 'refused'],
    ['wait=abc', 'refused'],
    ['wait=1.5', 1.5],
    ['wait=', 0],
    ['wait=5&other=1', 5],
    ['other=1', undefined],
    ['wait=%32%35', 25],
  ];
  for (const [search, want] of cases) {
    it(`"${search}" → ${String(want)}, as pollQuery reads it`, () => {
      assert.equal(viaSchema(search), want, 'the case itself is wrong');
      assert.equal(viaFastPath(search), want);
    });
  }
});
