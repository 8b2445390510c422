// Mocha's spec reporter plus one plain closing line, "N passed, N failed, N skipped", that CI
// tooling reads regardless of the test runner.
'use strict';
const Mocha = require('mocha');
const { Spec } = Mocha.reporters;
const { EVENT_RUN_END } = Mocha.Runner.constants;

class SpecWithSummary extends Spec {
  constructor(runner, options) {
    super(runner, options);
    runner.once(EVENT_RUN_END, () => {
      const s = runner.stats || this.stats;
      process.stdout.write(`\ntests: ${s.passes} passed, ${s.failures} failed, ${s.pending} skipped\n`);
      // Mocha runs with --exit; say what a test left running so leaks are seen, not hidden.
      const left = process.getActiveResourcesInfo().filter((r) => ['ProcessWrap', 'TCPServerWrap', 'TCPSocketWrap', 'TLSWrap', 'FSEventWrap'].includes(r));
      if (left.length) process.stderr.write(`tests: resources still open after the run: ${left.join(', ')}\n`);
    });
  }
}
module.exports = SpecWithSummary;
