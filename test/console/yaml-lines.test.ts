/** The submit page's mapping of the server's validation errors to YAML lines (console/src/yaml-lines.ts). */
import assert from 'node:assert/strict';
import { errorsByLine, lineOfPath, parseIssues } from '../../console/src/yaml-lines.ts';
import { formatIssues } from '../../control-plane/queue/queue.service.ts';
import { submitCommandSchema } from '../../common/wire.ts';

const SRC = `target:
  cluster: prod1
  node: n1
type: install
spec:
  dryRun: "yes"
  steps:
    - name: a
    - name: b
      extra: 1
`;

describe('console: validation errors next to their YAML line', () => {
  it('splits the server message into paths, spec issues under spec', () => {
    assert.deepEqual(parseIssues('target.cluster: Invalid input; type: bad'), [
      { path: ['target', 'cluster'], message: 'Invalid input' },
      { path: ['type'], message: 'bad' },
    ]);
    assert.deepEqual(parseIssues('invalid install spec: dryRun: expected boolean'), [{ path: ['spec', 'dryRun'], message: 'expected boolean' }]);
    assert.deepEqual(parseIssues('(root): Unrecognized key: "x"'), [{ path: [], message: 'Unrecognized key: "x"' }]);
    assert.deepEqual(parseIssues('cluster prod1 does not exist'), [{ path: [], message: 'cluster prod1 does not exist' }]);
  });

  it('finds the line of a path, or of its deepest existing parent', () => {
    assert.equal(lineOfPath(SRC, ['target', 'cluster']), 2);
    assert.equal(lineOfPath(SRC, ['type']), 4);
    assert.equal(lineOfPath(SRC, ['spec', 'dryRun']), 6);
    assert.equal(lineOfPath(SRC, ['spec', 'steps', '1', 'extra']), 10);
    assert.equal(lineOfPath(SRC, ['spec', 'steps', '1']), 9);
    assert.equal(lineOfPath(SRC, ['spec', 'missing']), 5);
    assert.equal(lineOfPath(SRC, ['spec', 'steps', '7', 'name']), 7);
    assert.equal(lineOfPath('a: [1, 2]\n', ['a', 'x']), 1);
  });

  it("maps the server's own message for a real invalid body", () => {
    const src = 'target:\n  cluster: "Bad Name"\ntype: nope\nspec: {}\n';
    const parsed = submitCommandSchema.safeParse({ target: { cluster: 'Bad Name' }, type: 'nope', spec: {} });
    assert.equal(parsed.success, false);
    const errs = errorsByLine(src, formatIssues(parsed.error!.issues));
    assert.deepEqual(
      errs.map((e) => [e.path, e.line]),
      [
        ['target.cluster', 2],
        ['type', 3],
      ],
    );
  });
});
