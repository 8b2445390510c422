/**
 * Keeps an agent's child processes from outliving it when the agent is killed (kill -9, OOM),
 * shared by the cluster agent (helm, tofu) and the node agent (host tools):
 *
 * - a child is started through `setpriv --pdeathsig SIGKILL` (util-linux) when available, so the
 *   kernel kills it the moment the agent dies;
 * - every run is recorded as a file under a folder of the agent's state and carries a random
 *   `TETHER_RUN_ID` in its environment, which its descendants inherit. At the next start
 *   {@link reapLeftoverProcesses} SIGKILLs every process still carrying a recorded id, so a
 *   grandchild lives at most until the agent is back.
 *
 * A descendant that scrubs its environment and leaves the process group is out of reach.
 */
import { randomBytes } from 'node:crypto';
import { accessSync, constants, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from './logger.ts';

export const RUN_ID_ENV = 'TETHER_RUN_ID';

/** Where runs are recorded (set by {@link reapLeftoverProcesses}) and the setpriv binary, if any. */
let runsDir: string | undefined;
let setpriv: string | undefined;

function findSetpriv(path = process.env.PATH ?? ''): string | undefined {
  for (const d of [...path.split(':'), '/usr/bin', '/bin']) {
    if (!d) continue;
    try {
      accessSync(join(d, 'setpriv'), constants.X_OK);
      return join(d, 'setpriv');
    } catch {
      /* not here */
    }
  }
  return undefined;
}

/** Live pids whose environment holds `TETHER_RUN_ID=<id>` (only our own processes are readable). */
function pidsOfRun(id: string): number[] {
  const entry = `${RUN_ID_ENV}=${id}`;
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${d}/environ`, 'utf8').split('\0').includes(entry)) out.push(Number(d));
    } catch {
      /* gone, or not ours */
    }
  }
  return out;
}

/**
 * Called once at start: kills what runs of a previous agent process left behind, then records
 * this process's runs in `dir`. Returns how many processes were killed.
 */
export function reapLeftoverProcesses(dir: string, log: Logger, what = 'child processes'): number {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  let killed = 0;
  for (const f of readdirSync(dir)) {
    if (/^[0-9a-f]{24}$/.test(f)) {
      for (const pid of pidsOfRun(f)) {
        try {
          process.kill(pid, 'SIGKILL');
          killed++;
        } catch {
          /* already gone */
        }
      }
    }
    rmSync(join(dir, f), { force: true });
  }
  if (killed) log.warn({ killed }, 'killed processes left behind by a previous agent process');
  runsDir = dir;
  setpriv = findSetpriv();
  if (!setpriv) log.warn(`setpriv (util-linux) not found: ${what} will not be killed at once if the agent dies, only at its next start`);
  return killed;
}

export interface TrackedRun {
  /** The command to spawn (setpriv in front when available). */
  file: string;
  args: string[];
  /** Environment additions: the run id marker (empty when runs are not recorded). */
  env: Record<string, string>;
  /** Forgets the run once it has ended. */
  done(): void;
}

/**
 * Prepares one run: recorded before the spawn (so a kill of the agent right after it still finds
 * the run), wrapped in setpriv. Without a prior {@link reapLeftoverProcesses} (a one-shot CLI
 * command) the command is returned unchanged.
 */
export function trackRun(file: string, args: string[]): TrackedRun {
  const dir = runsDir;
  const id = dir ? randomBytes(12).toString('hex') : undefined;
  if (dir && id) writeFileSync(join(dir, id), '', { mode: 0o600 });
  const [cmd, argv] = setpriv ? [setpriv, ['--pdeathsig', 'SIGKILL', '--', file, ...args]] : [file, args];
  return {
    file: cmd,
    args: argv,
    env: id ? { [RUN_ID_ENV]: id } : {},
    done: () => {
      if (dir && id) rmSync(join(dir, id), { force: true });
    },
  };
}
