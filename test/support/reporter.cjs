// Mocha's spec reporter plus one plain closing line, "N passed, N failed, N skipped", that CI
// tooling reads regardless of the test runner, and a watchdog for a starved event loop.
'use strict';
const Mocha = require('mocha');
const { Worker } = require('node:worker_threads');
const { Spec } = Mocha.reporters;
const { EVENT_RUN_END, EVENT_TEST_BEGIN, EVENT_HOOK_BEGIN } = Mocha.Runner.constants;

// Mocha's timeouts are timers, so a test that keeps the event loop from turning (a loop awaiting
// promises that settle without I/O, a synchronous call that never returns) hangs the whole run
// silently until CI's own limit. A worker thread watches a beat the main thread stores every
// second; when it has not moved for TETHER_TEST_STALL_SECONDS (600 by default: far above any
// synchronous call a test makes) it names the test or hook that was running and ends the process.
const stallSeconds = Number(process.env.TETHER_TEST_STALL_SECONDS) > 0 ? Number(process.env.TETHER_TEST_STALL_SECONDS) : 600;
const shared = new SharedArrayBuffer(8 + 4 + 2048);
const beat = new Float64Array(shared, 0, 1);
const titleLength = new Int32Array(shared, 8, 1);
const titleBytes = new Uint8Array(shared, 12);
function setTitle(title) {
  const bytes = Buffer.from(title, 'utf8').subarray(0, titleBytes.length);
  titleBytes.set(bytes);
  Atomics.store(titleLength, 0, bytes.length);
}
function startWatchdog() {
  beat[0] = Date.now();
  setInterval(() => (beat[0] = Date.now()), 1000).unref();
  const watchdog = new Worker(
    `const { workerData: { shared, stallSeconds } } = require('node:worker_threads');
     const { writeSync } = require('node:fs');
     const beat = new Float64Array(shared, 0, 1);
     const titleLength = new Int32Array(shared, 8, 1);
     const titleBytes = new Uint8Array(shared, 12);
     setInterval(() => {
       const still = (Date.now() - beat[0]) / 1000;
       if (still < stallSeconds) return;
       const title = Buffer.from(titleBytes.subarray(0, Atomics.load(titleLength, 0))).toString('utf8');
       writeSync(2, '\\ntests: the event loop has not turned for ' + Math.round(still) + ' s (TETHER_TEST_STALL_SECONDS=' + stallSeconds + '), in: ' + title + '\\ntests: ending the run\\n');
       process.kill(process.pid, 'SIGKILL');
     }, 1000);`,
    { eval: true, workerData: { shared, stallSeconds } },
  );
  watchdog.unref();
}

class SpecWithSummary extends Spec {
  constructor(runner, options) {
    super(runner, options);
    startWatchdog();
    runner.on(EVENT_TEST_BEGIN, (test) => setTitle(test.fullTitle()));
    runner.on(EVENT_HOOK_BEGIN, (hook) => setTitle(hook.fullTitle()));
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
