/**
 * CLI commands for stack bundles: `bundles validate|register|list`, `deploy` (new, upgrade,
 * rollback with --version), `instances list|show|history|delete`. Validation runs locally (a
 * folder, or a git URL cloned into a temp folder) with the same code the control plane runs at
 * deploy time.
 */
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { gitRef, gitUrl, repoPath } from '../../common/specs.ts';
import { validateBundleDir } from '../bundles/bundle-fs.ts';
import type { BundleSourceView, DeployResponse, InstanceVersionView, InstanceView } from '../bundles/bundles.wire.ts';
import { GitCache } from '../bundles/git-cache.ts';
import { OPEN_POLICY } from '../bundles/fetch-policy.ts';
import { formatProblems, type ValidationResult } from '../bundles/validate.ts';
import { checkWithTools, type ToolCheck } from '../bundles/validate.tools.ts';
import { printTable } from './table.ts';

import { allPages } from './client.ts';
export interface CliHelpers {
  call<T>(method: string, path: string, body?: unknown): Promise<T>;
  out(s: string): void;
  json(v: unknown): void;
  usage(message: string): Error;
}

const collect = (v: string, prev: string[]) => [...prev, v];

/** `--set key=value` pairs (values stay strings; the control plane types them by the bundle's inputs). */
export function parseSets(sets: readonly string[], usage: (m: string) => Error): Record<string, string> {
  const out: Record<string, string> = {};
  for (const s of sets) {
    const i = s.indexOf('=');
    if (i <= 0) throw usage(`--set takes key=value (got ${s})`);
    const key = s.slice(0, i);
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) throw usage(`--set: "${key}" is not an input name`);
    out[key] = s.slice(i + 1);
  }
  return out;
}

interface ValidateOptions {
  ref: string;
  path: string;
  /** Render charts and check modules with helm and tofu (false: `--no-tools`). */
  tools: boolean;
  helmBin: string;
  tofuBin: string;
}

type Validated = { where: string; result: ValidationResult; checks: ToolCheck[] };

/** Static validation, then (when it passed and tools are wanted) the checks with helm and tofu. */
async function validateDir(dir: string, o: ValidateOptions): Promise<Omit<Validated, 'where'>> {
  const result = validateBundleDir(dir);
  if (!result.bundle || !o.tools) return { result, checks: [] };
  const tools = await checkWithTools(dir, result.bundle, {
    helmBin: o.helmBin,
    tofuBin: o.tofuBin,
    ...(process.env.TF_CLI_CONFIG_FILE ? { tofuCliConfigFile: process.env.TF_CLI_CONFIG_FILE } : {}),
  });
  if (tools.problems.length === 0) return { result, checks: tools.checks };
  return { result: { problems: tools.problems }, checks: tools.checks };
}

async function validateTarget(target: string, o: ValidateOptions, usage: (m: string) => Error): Promise<Validated> {
  if (gitUrl.safeParse(target).success && !isDir(target)) {
    const ref = gitRef.safeParse(o.ref);
    const path = repoPath.safeParse(o.path);
    if (!ref.success) throw usage(`--ref: ${ref.error.issues[0]!.message}`);
    if (!path.success) throw usage(`--path: ${path.error.issues[0]!.message}`);
    const tmp = mkdtempSync(join(tmpdir(), 'tether-bundle-'));
    try {
      // The user's own machine, identity and network: no server policy, and the reason of a failure shown.
      const cache = new GitCache(tmp, { policy: OPEN_POLICY, environment: 'user', timeoutMs: 300_000, detailInErrors: true });
      const commit = await cache.resolve('local', { url: target, ref: ref.data });
      const tree = await cache.tree('local', target, commit);
      return { where: `${target}@${ref.data} (${commit.slice(0, 12)})${path.data === '.' ? '' : ` ${path.data}`}`, ...(await validateDir(join(tree, path.data), o)) };
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
  if (!isDir(target)) throw usage(`${target} is neither a folder nor a git URL`);
  return { where: resolve(target), ...(await validateDir(target, o)) };
}

/**
 * `--url` is also the global control plane flag, which commander gives to the program wherever it
 * appears. For `bundles register` the one after the subcommand is the git URL, one before it (if
 * any) the control plane's: split them by position.
 */
export function splitUrlFlags(argv: readonly string[], subcommand: readonly string[]): { controlPlane?: string; git?: string } {
  const at = argv.findIndex((a, i) => subcommand.every((w, j) => argv[i + j] === w));
  const out: { controlPlane?: string; git?: string } = {};
  argv.forEach((a, i) => {
    const value = a === '--url' ? argv[i + 1] : a.startsWith('--url=') ? a.slice('--url='.length) : undefined;
    if (value === undefined) return;
    if (at >= 0 && i > at) out.git = value;
    else out.controlPlane = value;
  });
  return out;
}

/**
 * `--version` is also the program's own flag (print the version), which commander takes wherever
 * it appears. After the `deploy` command word it is the version to roll back to: renamed to the
 * deploy command's hidden `--to-version` before parsing.
 */
export function deployVersionArgv(argv: readonly string[]): string[] {
  let at = -1;
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--url' || a === '--api-key' || a === '--ca-file') i++;
    else if (!a.startsWith('-')) {
      if (a === 'deploy') at = i;
      break;
    }
  }
  if (at < 0) return [...argv];
  return argv.map((a, i) => (i <= at ? a : a === '--version' ? '--to-version' : a.startsWith('--version=') ? `--to-version=${a.slice('--version='.length)}` : a));
}

/** Inputs on one line: `k=v, …` (values as JSON unless plain strings). */
function inputsLine(inputs: Record<string, unknown>): string {
  return Object.entries(inputs).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(', ') || '-';
}

/** The first line of a password file (at most 4 KiB; the file is never echoed). */
function readPasswordFile(file: string, usage: (m: string) => Error): string {
  let text: string;
  try {
    if (statSync(file).size > 4096) throw usage(`--password-file ${file}: larger than 4 KiB`);
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if (err instanceof Error && !('code' in err)) throw err;
    throw usage(`--password-file ${file}: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}`);
  }
  const line = text.split(/\r?\n/)[0] ?? '';
  if (line === '') throw usage(`--password-file ${file}: empty`);
  return line;
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function showInstance(i: InstanceView): void {
  const rows: [string, string][] = [
    ['osid', i.osid],
    ['state', i.state],
    ['cluster', i.cluster],
    ['namespace', i.namespace],
    ['host', i.host],
    ...Object.entries(i.ports).map(([p, host]): [string, string] => [`port ${p}`, host]),
    ['bundle', `${i.bundle.source} (${i.bundle.name} ${i.bundle.version})`],
    ['commit', i.bundle.commit],
    ['version', String(i.version)],
    ['sync', `${i.syncStatus}${i.lastCheckedAt ? ` (checked ${i.lastCheckedAt})` : ''}`],
    ['job', `${i.job.id} ${i.job.action} ${i.job.state}${i.job.error ? `: ${i.job.error.code}: ${i.job.error.message}` : ''}`],
    ...Object.entries(i.inputs).map(([k, v]): [string, string] => [`input ${k}`, JSON.stringify(v)]),
    ...Object.entries(i.outputs).map(([k, v]): [string, string] => [`output ${k}`, typeof v === 'string' ? v : JSON.stringify(v)]),
    ...Object.entries(i.sensitiveOutputs).map(([k, v]): [string, string] => [`output ${k}`, `(sensitive) Secret ${v.secret.namespace}/${v.secret.name} key ${v.secret.key}`]),
  ];
  printTable(['FIELD', 'VALUE'], rows);
}

export function registerBundleCommands(program: Command, h: CliHelpers): void {
  const bundles = program.command('bundles').description('stack bundles: validate, register and list');
  bundles
    .command('validate <target>')
    .description('validate a bundle folder or git URL; lists every problem; exits 1 when invalid')
    .option('--ref <ref>', 'branch, tag or commit (git URLs)', 'main')
    .option('--path <path>', 'folder of bundle.yaml inside the repository (git URLs)', '.')
    .option('--helm-bin <path>', 'helm used to render the charts (env TETHER_HELM_BIN)', process.env.TETHER_HELM_BIN || 'helm')
    .option('--tofu-bin <path>', 'tofu used to check the modules (env TETHER_TOFU_BIN; TF_CLI_CONFIG_FILE is passed on)', process.env.TETHER_TOFU_BIN || 'tofu')
    .option('--no-tools', 'static checks only: do not render charts or check modules with helm and tofu')
    .option('--json', 'print JSON')
    .action(async (target: string, o: ValidateOptions & { json?: boolean }) => {
      const { where, result, checks } = await validateTarget(target, o, h.usage);
      if (o.json) h.json({ valid: result.bundle !== undefined, problems: result.problems, checks, ...(result.bundle ? { bundle: result.bundle } : {}) });
      else if (result.bundle) {
        const b = result.bundle;
        h.out(`${where}: bundle ${b.name} ${b.version} is valid`);
        h.out(`  type ${b.type ?? b.name}; ${Object.keys(b.inputs).length} input(s): ${Object.keys(b.inputs).join(', ') || '-'}`);
        h.out(`  ${b.resources.length} resource(s): ${b.resources.map((r) => `${r.name} (${r.type})`).join(', ')}`);
        h.out(`  ${Object.keys(b.outputs).length} output(s): ${Object.entries(b.outputs).map(([k, v]) => (v.sensitive ? `${k} (sensitive)` : k)).join(', ') || '-'}`);
        for (const c of checks) h.out(`  ${c.tool} ${c.resource}: ${c.status}${c.note ? ` (${c.note})` : ''}`);
        if (!o.tools) h.out('  charts and modules were not checked with helm and tofu (--no-tools)');
      } else {
        h.out(formatProblems(result.problems));
        for (const c of checks.filter((x) => x.status === 'skipped')) h.out(`note: ${c.tool} ${c.resource}: ${c.note}`);
        process.stderr.write(`tether: ${where}: ${result.problems.length} problem(s); the bundle is invalid\n`);
      }
      process.exitCode = result.bundle ? 0 : 1;
    });
  bundles
    .command('register <name>')
    .description('register (or update) a bundle source: a git URL, a ref and the folder of bundle.yaml')
    .option('--url <git-url>', 'repository URL (required)')
    .option('--ref <ref>', 'branch, tag or commit; pinned to a commit at every deployment', 'main')
    .option('--path <path>', 'folder of bundle.yaml inside the repository', '.')
    .option('--username <user>', "the source's own https user name (with --password-file)")
    .option('--password-file <file>', 'file holding the password or token for --username (first line)')
    .option('--json', 'print JSON')
    .action(async (name: string, o: { ref: string; path: string; username?: string; passwordFile?: string; json?: boolean }) => {
      const urls = splitUrlFlags(process.argv, ['bundles', 'register']);
      if (!urls.git) throw h.usage('bundles register <name> --url <git-url> [--ref <ref>] [--path <path>] [--username <user> --password-file <file>]');
      if ((o.username === undefined) !== (o.passwordFile === undefined)) throw h.usage('--username and --password-file go together');
      program.setOptionValue('url', urls.controlPlane);
      const credentials = o.username !== undefined && o.passwordFile !== undefined ? { username: o.username, password: readPasswordFile(o.passwordFile, h.usage) } : {};
      const r = await h.call<BundleSourceView & { commit: string; created: boolean }>('POST', '/v1/bundles', { name, url: urls.git, ref: o.ref, path: o.path, ...credentials });
      if (o.json) h.json(r);
      else h.out(`${r.name}\t${r.url}\t${r.ref}\t${r.path}\t${r.commit}`);
    });
  bundles
    .command('delete <name>')
    .description('delete a bundle source and its credentials (instances deployed from it keep running)')
    .action(async (name: string) => {
      await h.call('DELETE', `/v1/bundles/${encodeURIComponent(name)}`);
    });
  bundles
    .command('list')
    .description('list registered bundle sources')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const { bundles: list } = await h.call<{ bundles: BundleSourceView[] }>('GET', '/v1/bundles');
      if (o.json) h.json(list);
      else printTable(['NAME', 'URL', 'REF', 'PATH', 'UPDATED'], list.map((b) => [b.name, b.url, b.ref, b.path, b.updatedAt]));
    });

  const argv = deployVersionArgv(process.argv);
  process.argv.splice(0, process.argv.length, ...argv);
  program
    .command('deploy [bundle]')
    .description('deploy a registered bundle to a cluster (or upgrade --instance in place, or roll it back with --version N); prints the job id')
    .option('--cluster <cid>', 'target cluster (new instances)')
    .option('--instance <osid>', 'upgrade this instance in place (earlier inputs are kept unless set)')
    .option('--set <key=value>', 'an input (repeatable)', collect, [])
    .addOption(new Option('--to-version <n>', '--version <n> with --instance: roll back to that version (its commit and inputs), as a new version').hideHelp())
    .option('--timeout <seconds>', 'job timeout in seconds')
    .option('--json', 'print {osid, jobId, version, instance} as JSON')
    .addHelpText('after', '\n  --version <n>         with --instance: roll back to version n (its commit and inputs) as a new version (see instances history)')
    .action(async (bundle: string | undefined, o: { cluster?: string; instance?: string; set: string[]; toVersion?: string; timeout?: string; json?: boolean }) => {
      const inputs = parseSets(o.set, h.usage);
      if (o.timeout !== undefined && !/^[1-9][0-9]*$/.test(o.timeout)) throw h.usage('--timeout must be a whole number of seconds');
      if (o.toVersion !== undefined && !/^[1-9][0-9]{0,9}$/.test(o.toVersion)) throw h.usage('--version must be a version number (see instances history)');
      const timeout = o.timeout ? { timeoutSeconds: Number(o.timeout) } : {};
      let r: DeployResponse;
      if (o.toVersion !== undefined) {
        if (!o.instance || bundle || o.cluster) throw h.usage('--version rolls an instance back: deploy --instance <osid> --version <n>');
        if (o.set.length) throw h.usage('--version deploys that version\'s inputs: give no --set');
        r = await h.call<DeployResponse>('POST', `/v1/instances/${encodeURIComponent(o.instance)}/deploy`, { inputs: {}, version: Number(o.toVersion), ...timeout });
      } else if (o.instance) {
        if (bundle || o.cluster) throw h.usage('--instance upgrades an existing instance: give no bundle and no --cluster');
        r = await h.call<DeployResponse>('POST', `/v1/instances/${encodeURIComponent(o.instance)}/deploy`, { inputs, ...timeout });
      } else {
        if (!bundle || !o.cluster) throw h.usage('deploy <bundle> --cluster <cid> (or --instance <osid> to upgrade)');
        r = await h.call<DeployResponse>('POST', '/v1/instances', { bundle, cluster: o.cluster, inputs, ...timeout });
      }
      if (o.json) return h.json(r);
      h.out(String(r.jobId));
      process.stderr.write(`tether: instance ${r.osid} (namespace ${r.instance.namespace}, host ${r.instance.host}): version ${r.version}, job ${r.jobId}\n`);
    });

  const instances = program.command('instances').description('bundle instances');
  instances
    .command('list')
    .description('list instances and their state')
    .option('--cluster <cid>', 'only this cluster')
    .option('--json', 'print JSON')
    .action(async (o: { cluster?: string; json?: boolean }) => {
      const list = await allPages<InstanceView>((m, p) => h.call(m, p), `/v1/instances${o.cluster ? `?cluster=${encodeURIComponent(o.cluster)}` : ''}`, 'instances');
      if (o.json) return h.json(list);
      printTable(['OSID', 'BUNDLE', 'VERSION', 'CLUSTER', 'STATE', 'SYNC', 'HOST', 'JOB'], list.map((i) => [i.osid, i.bundle.source, i.bundle.version, i.cluster, i.state, i.syncStatus, i.host, String(i.job.id)]));
    });
  instances
    .command('show <osid>')
    .description("an instance's state, inputs and outputs")
    .option('--json', 'print JSON')
    .action(async (osid: string, o: { json?: boolean }) => {
      const i = await h.call<InstanceView>('GET', `/v1/instances/${encodeURIComponent(osid)}`);
      if (o.json) return h.json(i);
      showInstance(i);
    });
  instances
    .command('history <osid>')
    .description("every version of an instance's desired state: when, commit, inputs, job")
    .option('--limit <n>', 'the newest n versions (at most 1000)', '100')
    .option('--json', 'print JSON')
    .action(async (osid: string, o: { limit: string; json?: boolean }) => {
      if (!/^[1-9][0-9]{0,3}$/.test(o.limit) || Number(o.limit) > 1000) throw h.usage('--limit must be a whole number from 1 to 1000');
      const { versions } = await h.call<{ versions: InstanceVersionView[] }>('GET', `/v1/instances/${encodeURIComponent(osid)}/versions?limit=${o.limit}`);
      if (o.json) return h.json(versions);
      printTable(
        ['VERSION', 'WHEN', 'ACTION', 'BUNDLE', 'COMMIT', 'INPUTS', 'JOB'],
        versions.map((v) => [
          String(v.version),
          v.createdAt,
          v.action === 'rollback' ? `rollback to ${v.rollbackOf}` : v.action,
          `${v.bundle.name} ${v.bundle.version}`,
          v.bundle.commit.slice(0, 12),
          inputsLine(v.inputs),
          v.job ? `${v.job.id} ${v.job.state ?? 'expired'}` : '-',
        ]),
      );
    });
  instances
    .command('delete <osid>')
    .description('tear the instance down in reverse order; prints the job id')
    .option('--json', 'print JSON')
    .action(async (osid: string, o: { json?: boolean }) => {
      const r = await h.call<DeployResponse>('DELETE', `/v1/instances/${encodeURIComponent(osid)}`);
      if (o.json) return h.json(r);
      h.out(String(r.jobId));
    });
}
