/**
 * The last safety net of a long-running program (`tether server`, the cluster agent, the node
 * agent's daemon): a promise rejected with no handler, or an exception thrown where nothing
 * catches it, leaves the process in a state nobody knows. It is logged once through the
 * program's logger (the error under `err`; in the agents that logger masks secrets), the log is
 * flushed, and the process exits 1 — systemd or the Deployment restarts it — rather than carrying
 * on half-broken or dying without a word.
 *
 * TETHER_TEST_INJECT_FAULT=unhandled-rejection|uncaught-exception (tests only) makes the program
 * cause one right after the net is in place, so a test can see what the net does.
 */
import type { Logger } from './logger.ts';

/** How long the log gets to flush before the process exits anyway. */
const FLUSH_BOUND_MS = 2000;

export function installProcessNet(log: Logger): void {
  let failing = false;
  const fail = (err: unknown, what: string) => {
    if (failing) return;
    failing = true;
    try {
      log.fatal({ err }, `${what}: the process state is unknown; exiting`);
    } catch {
      // A logger that cannot write: the exit code still says it.
    }
    const bound = setTimeout(() => process.exit(1), FLUSH_BOUND_MS);
    bound.unref();
    try {
      log.flush(() => process.exit(1));
    } catch {
      process.exit(1);
    }
  };
  process.on('unhandledRejection', (reason) => fail(reason, 'unhandled promise rejection'));
  process.on('uncaughtException', (err, origin) => fail(err, origin === 'unhandledRejection' ? 'unhandled promise rejection' : 'uncaught exception'));

  const inject = process.env.TETHER_TEST_INJECT_FAULT;
  if (inject === 'unhandled-rejection') setTimeout(() => void Promise.reject(new Error('fault injected by TETHER_TEST_INJECT_FAULT')), 0);
  else if (inject === 'uncaught-exception') {
    setTimeout(() => {
      throw new Error('fault injected by TETHER_TEST_INJECT_FAULT');
    }, 0);
  }
}
