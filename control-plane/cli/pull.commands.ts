/**
 * `tether pull OSID`: writes the instance's desired state to `tether.<cid>.<osid>/tether.yaml` in
 * the current folder (bundle source name, url, ref, path, commit, bundle name and version,
 * inputs), so that it can live in the user's own git repository; `tether diff --file DIR` and
 * `tether sync --file DIR` compare and push it (readStateFile). Inputs are plain values: a
 * bundle names its secrets with secretRefs (Secrets in the cluster), so no secret value is ever
 * an input, and none is written. A folder holding another instance's file is never overwritten.
 */
import { existsSync, lstatSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { parse, stringify } from 'yaml';
import { z } from 'zod';
import { errorMessage } from '../../common/errors.ts';
import type { BundleSourceView, InstanceView } from '../bundles/bundles.wire.ts';
import { OSID_RE } from '../bundles/compile.ts';

export const STATE_FILE = 'tether.yaml';
/** A state file larger than this is refused before it is parsed. */
const MAX_STATE_FILE_BYTES = 1024 * 1024;

const inputValue = z.union([z.string().max(64 * 1024), z.number().finite(), z.boolean(), z.null()]);

/** tether.yaml: what `tether pull` writes and `--file` reads (`commit` and `inputs` are what is pushed). */
export const stateFileSchema = z
  .object({
    apiVersion: z.literal('tether.dev/v1'),
    kind: z.literal('InstanceState'),
    instance: z.string().regex(OSID_RE, 'must be an instance id'),
    cluster: z.string().min(1).max(63),
    bundle: z
      .object({
        source: z.string().min(1).max(63),
        url: z.string().max(2048).optional(),
        ref: z.string().max(256).optional(),
        path: z.string().max(1024).optional(),
        commit: z.string().regex(/^[0-9a-f]{40}$/, 'must be a full commit SHA (40 lowercase hex digits)'),
        name: z.string().max(63).optional(),
        version: z.string().max(64).optional(),
      })
      .strict(),
    inputs: z.record(z.string().max(128), inputValue).refine((o) => Object.keys(o).length <= 256, 'at most 256 inputs').default({}),
  })
  .strict();
export type StateFile = z.infer<typeof stateFileSchema>;

/** The folder `tether pull` writes: `tether.<cid>.<osid>`. */
export const stateDirName = (cid: string, osid: string) => `tether.${cid}.${osid}`;

/** The state file of an instance view (and its source's ref, when the source is still registered). */
export function stateFileOf(v: InstanceView, source: BundleSourceView | undefined): StateFile {
  return {
    apiVersion: 'tether.dev/v1',
    kind: 'InstanceState',
    instance: v.osid,
    cluster: v.cluster,
    bundle: {
      source: v.bundle.source,
      url: v.bundle.url,
      ...(source ? { ref: source.ref } : {}),
      path: v.bundle.path,
      commit: v.bundle.commit,
      name: v.bundle.name,
      version: v.bundle.version,
    },
    inputs: v.inputs as StateFile['inputs'],
  };
}

const HEADER =
  '# The desired state of a Tether instance (tether pull). Edit commit (a commit of the bundle source)\n' +
  '# or inputs, then: tether diff --file DIR (0 in sync, 2 drift, 1 failed); tether sync --file DIR.\n' +
  '# Inputs are plain values: secrets are Secrets in the cluster, named by the bundle (secretRef).\n';

/** Reads and checks `DIR/tether.yaml` (bounded; every problem as one message). */
export function readStateFile(dir: string): StateFile {
  const file = join(dir, STATE_FILE);
  let text: string;
  try {
    const st = lstatSync(file);
    if (!st.isFile()) throw new Error(`${file} is not a regular file`);
    if (st.size > MAX_STATE_FILE_BYTES) throw new Error(`${file} is larger than ${MAX_STATE_FILE_BYTES / 1024} KiB`);
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(code ? `cannot read ${file}: ${code}` : errorMessage(err));
  }
  let doc: unknown;
  try {
    doc = parse(text, { maxAliasCount: 10 });
  } catch (err) {
    throw new Error(`${file}: not YAML: ${errorMessage(err).split('\n')[0]}`);
  }
  const r = stateFileSchema.safeParse(doc);
  if (!r.success) throw new Error(`${file}: ${r.error.issues.map((i) => `${i.path.join('.') || '(top)'}: ${i.message}`).join('; ')}`);
  return r.data;
}

/** The body of POST /v1/instances/{osid}/diff|sync for a state file (null inputs left to their defaults). */
export function stateBody(f: StateFile): { commit: string; inputs: Record<string, string | number | boolean> } {
  const inputs: Record<string, string | number | boolean> = {};
  for (const [k, v] of Object.entries(f.inputs)) if (v !== null) inputs[k] = v;
  return { commit: f.bundle.commit, inputs };
}

/**
 * Writes `dir/tether.yaml` for `state`; refuses when `dir` holds another instance's file (or a
 * file that is not a state file). Returns whether it replaced an earlier one.
 */
export function writeStateFile(dir: string, state: StateFile): { replaced: boolean } {
  const file = join(dir, STATE_FILE);
  let replaced = false;
  if (existsSync(dir)) {
    if (!lstatSync(dir).isDirectory()) throw new Error(`${dir} exists and is not a folder`);
    if (existsSync(file)) {
      let current: StateFile;
      try {
        current = readStateFile(dir);
      } catch (err) {
        throw new Error(`${dir} holds a ${STATE_FILE} that is not an instance state (${errorMessage(err)}): not overwritten`);
      }
      if (current.instance !== state.instance || current.cluster !== state.cluster) {
        throw new Error(`${dir} holds the state of instance ${current.instance} in cluster ${current.cluster}, not ${state.instance} in ${state.cluster}: not overwritten`);
      }
      replaced = true;
    }
  } else mkdirSync(dir, { recursive: true, mode: 0o755 });
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, HEADER + stringify(state, { lineWidth: 0 }), { mode: 0o644 });
  renameSync(tmp, file);
  return { replaced };
}

export interface PullHelpers {
  call<T>(method: string, path: string, body?: unknown): Promise<T>;
  out(s: string): void;
  usage(message: string): Error;
}

export function registerPullCommand(program: Command, h: PullHelpers): void {
  program
    .command('pull <osid>')
    .description("write an instance's desired state to tether.<cid>.<osid>/tether.yaml (for tether diff|sync --file)")
    .option('--dir <parent>', 'where to create the folder', '.')
    .action(async (osid: string, o: { dir: string }) => {
      if (!OSID_RE.test(osid)) throw h.usage(`"${osid}" is not an instance id (see tether instances list)`);
      const v = await h.call<InstanceView>('GET', `/v1/instances/${encodeURIComponent(osid)}`);
      const source = await h.call<BundleSourceView>('GET', `/v1/bundles/${encodeURIComponent(v.bundle.source)}`).catch(() => undefined);
      const dir = join(o.dir, stateDirName(v.cluster, v.osid));
      const { replaced } = writeStateFile(dir, stateFileOf(v, source));
      h.out(`${join(dir, STATE_FILE)}\t${replaced ? 'updated' : 'written'} (version ${v.version}, commit ${v.bundle.commit.slice(0, 12)})`);
    });
}
