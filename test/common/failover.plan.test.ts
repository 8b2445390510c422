/** The agents' choice of control-plane replica (common/agent/failover.plan.ts): pure, no I/O. */
import assert from 'node:assert/strict';
import { TetherError } from '../../common/errors.ts';
import { HttpError } from '../../common/http-client.ts';
import { describeEndpoint, expandEndpoints, failoverReason, nextEndpoint, parseControlPlaneUrls } from '../../common/agent/failover.plan.ts';

describe('agent failover: the pure choice of replica', () => {
  it('reads one URL, a list, or a comma/space-separated string; keeps the order, drops duplicates', () => {
    assert.deepEqual(parseControlPlaneUrls('https://cp:8443'), ['https://cp:8443']);
    assert.deepEqual(parseControlPlaneUrls('https://a:8443, https://b:8443,https://a:8443/'), ['https://a:8443', 'https://b:8443']);
    assert.deepEqual(parseControlPlaneUrls(['https://b', 'https://a:443 https://c']), ['https://b', 'https://a', 'https://c']);
  });

  it('refuses what is not https://host[:port], naming it', () => {
    const refused = (input: string | string[], re: RegExp) =>
      assert.throws(() => parseControlPlaneUrls(input), (e: TetherError) => e.code === 'invalid_url' && e.status === 400 && re.test(e.message));
    refused('', /no control plane URL/);
    refused('https://a,http://b', /must be https:\/\/ \(got http:\/\/b\)/);
    refused('https://a/path', /host\[:port\] only/);
    refused('https://user:pw@a', /host\[:port\] only/);
    refused('https://a?x=1', /host\[:port\] only/);
    refused('not a url', /not a URL: not/);
    refused(Array.from({ length: 17 }, (_, i) => `https://h${i}`), /at most 16/);
  });

  it('moves on unreachable replicas and 5xx (503 draining named), never on a 4xx or an abort', () => {
    assert.equal(failoverReason(new TetherError('transport_error', 'ECONNREFUSED', { retryable: true })), 'unreachable');
    assert.equal(failoverReason(new TetherError('timeout', 'no answer', { retryable: true })), 'unreachable');
    assert.equal(failoverReason(new HttpError(503, 'draining', 'this replica is shutting down')), 'draining');
    assert.equal(failoverReason(new HttpError(503, 'database_unavailable', 'x')), 'server_error');
    assert.equal(failoverReason(new HttpError(500, 'internal', 'x')), 'server_error');
    for (const status of [400, 401, 403, 404, 409, 413, 429]) assert.equal(failoverReason(new HttpError(status, 'x', 'x')), undefined, String(status));
    assert.equal(failoverReason(new TetherError('client_closed', 'closed', { retryable: false })), undefined);
    assert.equal(failoverReason(Object.assign(new Error('aborted'), { name: 'AbortError' })), undefined);
    assert.equal(failoverReason('weird'), undefined);
  });

  it('expands a name with several addresses into one endpoint per address, in order', () => {
    const e = expandEndpoints(['https://cp.example:8443', 'https://10.0.0.9:8443'], new Map([['https://cp.example:8443', ['10.0.0.1', '10.0.0.2', '10.0.0.1']]]));
    assert.deepEqual(e, [
      { url: 'https://cp.example:8443', address: '10.0.0.1' },
      { url: 'https://cp.example:8443', address: '10.0.0.2' },
      { url: 'https://10.0.0.9:8443' },
    ]);
    // One address is dialled by name.
    assert.deepEqual(expandEndpoints(['https://one'], new Map([['https://one', ['10.0.0.1']]])), [{ url: 'https://one' }]);
  });

  it('goes round robin from the failed endpoint; a name is walked from the address that failed', () => {
    const list = expandEndpoints(['https://a', 'https://b', 'https://c'], new Map());
    assert.equal(nextEndpoint(list, { url: 'https://a' }).url, 'https://b');
    assert.equal(nextEndpoint(list, { url: 'https://c' }).url, 'https://a');
    const named = expandEndpoints(['https://cp', 'https://other'], new Map([['https://cp', ['10.0.0.1', '10.0.0.2', '10.0.0.3']]]));
    // Dialled by name, the resolver chose .2: the next is .3, then the other URL, then .1.
    assert.deepEqual(nextEndpoint(named, { url: 'https://cp' }, '10.0.0.2'), { url: 'https://cp', address: '10.0.0.3' });
    assert.deepEqual(nextEndpoint(named, { url: 'https://cp', address: '10.0.0.3' }), { url: 'https://other' });
    assert.deepEqual(nextEndpoint(named, { url: 'https://other' }), { url: 'https://cp', address: '10.0.0.1' });
    // Never connected (refused at once): the name's first address is taken as the failed one.
    assert.deepEqual(nextEndpoint(named, { url: 'https://cp' }), { url: 'https://cp', address: '10.0.0.2' });
    // An address that left the name: start over at the name's first.
    assert.deepEqual(nextEndpoint(named, { url: 'https://cp', address: '10.0.0.7' }), { url: 'https://cp', address: '10.0.0.2' });
    // One endpoint: reconnect to it; an unknown URL: the first.
    assert.deepEqual(nextEndpoint([{ url: 'https://a' }], { url: 'https://a' }), { url: 'https://a' });
    assert.deepEqual(nextEndpoint(list, { url: 'https://gone' }), { url: 'https://a' });
    assert.equal(describeEndpoint({ url: 'https://cp', address: '10.0.0.3' }), 'https://cp (10.0.0.3)');
  });
});
