/**
 * `tether bundles validate` with the real tools, after the static checks of validate.ts passed:
 * each helm resource's chart is rendered (`helm template` with the bundle's defaults) and each
 * tofu module checked (`tofu init -backend=false`, then `tofu validate`), in scratch copies so
 * the bundle folder is never written. A tool that is not installed, or providers that cannot be
 * installed offline, are said in the result (`checks`), not turned into problems. Tools run with
 * argument arrays, a minimal environment and a time limit.
 */
import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatPath } from './refs.ts';
import type { Bundle } from './bundle.schema.ts';
import {
  exampleValues,
  helmTemplateArgs,
  helmTemplateProblem,
  providersUnavailable,
  tofuInitArgs,
  tofuValidateArgs,
  tofuValidateProblems,
  type Problem,
} from './validate.ts';

export interface ToolOptions {
  /** helm binary (default `helm` on PATH). */
  helmBin: string;
  /** tofu binary (default `tofu` on PATH). */
  tofuBin: string;
  /** Handed to tofu as TF_CLI_CONFIG_FILE (a provider mirror). */
  tofuCliConfigFile?: string;
  /** Per tool run. */
  timeoutMs?: number;
}

/** What was checked with a tool, for each resource: passed, failed (see problems) or not checked and why. */
export interface ToolCheck {
  resource: string;
  tool: 'helm' | 'tofu';
  status: 'passed' | 'failed' | 'skipped';
  note?: string;
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  missing: boolean;
}

function run(file: string, args: string[], cwd: string, env: Record<string, string>, timeoutMs: number): Promise<Run> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd, env, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : null) : 0;
      const missing = (err as NodeJS.ErrnoException | null)?.code === 'ENOENT';
      resolve({ code, stdout: String(stdout), stderr: missing ? `${file} is not installed` : String(stderr || (err && !missing && code === null ? `${file} did not finish within ${timeoutMs / 1000}s` : '')), missing });
    });
  });
}

export async function checkWithTools(bundleDir: string, bundle: Bundle, o: ToolOptions): Promise<{ problems: Problem[]; checks: ToolCheck[] }> {
  const problems: Problem[] = [];
  const checks: ToolCheck[] = [];
  const timeoutMs = o.timeoutMs ?? 120_000;
  const scratch = mkdtempSync(join(tmpdir(), 'tether-validate-'));
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: scratch,
    HELM_CACHE_HOME: join(scratch, 'helm-cache'),
    HELM_CONFIG_HOME: join(scratch, 'helm-config'),
    HELM_DATA_HOME: join(scratch, 'helm-data'),
    TF_IN_AUTOMATION: '1',
    TF_INPUT: '0',
    CHECKPOINT_DISABLE: '1',
    ...(o.tofuCliConfigFile ? { TF_CLI_CONFIG_FILE: o.tofuCliConfigFile } : {}),
  };
  const have = new Map<string, boolean>();
  const present = async (tool: 'helm' | 'tofu', bin: string) => {
    if (!have.has(tool)) have.set(tool, !(await run(bin, ['version'], scratch, env, timeoutMs)).missing);
    return have.get(tool)!;
  };
  try {
    for (const [i, r] of bundle.resources.entries()) {
      const at = formatPath(['resources', i]);
      if (r.type === 'helm') {
        if (!(await present('helm', o.helmBin))) {
          checks.push({ resource: r.name, tool: 'helm', status: 'skipped', note: `${o.helmBin} is not installed: the chart was not rendered (install helm or pass --helm-bin)` });
          continue;
        }
        const valuesFile = join(scratch, `${r.name}.values.json`);
        writeFileSync(valuesFile, JSON.stringify(exampleValues(bundle, r.values)), { mode: 0o600 });
        const res = await run(o.helmBin, helmTemplateArgs(r.name, join(bundleDir, r.source), valuesFile), scratch, env, timeoutMs);
        if (res.code === 0) checks.push({ resource: r.name, tool: 'helm', status: 'passed', note: 'helm template rendered the chart with the bundle\'s defaults' });
        else {
          problems.push(helmTemplateProblem(res.stderr, r.source, at));
          checks.push({ resource: r.name, tool: 'helm', status: 'failed' });
        }
      } else if (r.type === 'tofu') {
        if (!(await present('tofu', o.tofuBin))) {
          checks.push({ resource: r.name, tool: 'tofu', status: 'skipped', note: `${o.tofuBin} is not installed: the module was not validated (install OpenTofu or pass --tofu-bin)` });
          continue;
        }
        // A copy: init writes .terraform and a lock file next to the module.
        const moduleDir = join(scratch, `${r.name}-module`);
        cpSync(join(bundleDir, r.source), moduleDir, { recursive: true, dereference: true });
        const tofuEnv = { ...env, TF_DATA_DIR: join(scratch, `${r.name}-tofu-data`) };
        const init = await run(o.tofuBin, tofuInitArgs(), moduleDir, tofuEnv, timeoutMs);
        if (init.code !== 0) {
          const output = `${init.stdout}\n${init.stderr}`;
          if (providersUnavailable(output)) {
            checks.push({
              resource: r.name,
              tool: 'tofu',
              status: 'skipped',
              note: 'tofu init could not install the module\'s providers (offline, or not in the configured mirror): the module was not validated; configure a provider mirror with TF_CLI_CONFIG_FILE (see "Air-gapped clusters" in docs/cluster-agent.md)',
            });
          } else {
            problems.push({ file: r.source, path: at, message: `tofu init: ${init.stderr.trim().split('\n').filter((l) => l.trim()).slice(-8).join('\n')}`.slice(0, 4000) });
            checks.push({ resource: r.name, tool: 'tofu', status: 'failed' });
          }
          continue;
        }
        const v = await run(o.tofuBin, tofuValidateArgs(), moduleDir, tofuEnv, timeoutMs);
        const found = v.code === 0 ? [] : tofuValidateProblems(v.stdout, r.source, at);
        problems.push(...found);
        checks.push({ resource: r.name, tool: 'tofu', status: found.length ? 'failed' : 'passed', ...(found.length ? {} : { note: 'tofu validate found no error' }) });
      }
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  return { problems, checks };
}
