/** Which command lines start the daemon without commander (node-agent/cli/main.ts): exactly `agent [--config P]`. */
import assert from 'node:assert/strict';
import { plainAgentArgs } from '../../node-agent/cli/agent.command.ts';

describe('node agent: the daemon entry', () => {
  it('takes the plain daemon command lines', () => {
    assert.deepEqual(plainAgentArgs(['agent']), {});
    assert.deepEqual(plainAgentArgs(['agent', '--config', '/etc/tether/config.yaml']), { config: '/etc/tether/config.yaml' });
    assert.deepEqual(plainAgentArgs(['agent', '--config=/x/c.yaml']), { config: '/x/c.yaml' });
  });

  it('leaves everything else to the CLI (help, unknown or malformed options, other commands)', () => {
    for (const args of [[], ['version'], ['status', '--config', 'c'], ['agent', '--help'], ['agent', '-h'], ['agent', '--config'], ['agent', '--config='], ['agent', '--config', ''], ['agent', '--config', '--help'], ['agent', '--config', 'c', '--bogus'], ['agent', 'extra'], ['Agent']]) {
      assert.equal(plainAgentArgs(args), undefined, JSON.stringify(args));
    }
  });
});
