/**
 * The tofu `diff` as a pure plan: the arguments of `tofu plan` (refresh on, no lock, a saved plan
 * file, `-detailed-exitcode`) and how `tofu show -json` of the saved plan becomes the diff's
 * resources: one per managed resource, by address and planned actions only. Attribute values
 * (sensitive or not) never leave the agent: the plan JSON holds them, the result does not.
 */
import { CommandFailure } from '../../common/errors.ts';
import { summarize, type DiffStatus, type DiffSummary } from '../manifest/diff.plan.ts';

/**
 * `tofu plan` for a diff: refresh on (the live objects are read), `-lock=false` (no lock is
 * taken in the state backend: a diff writes nothing there; plan never persists the refreshed
 * state), the plan saved to `planFile` for `tofu show -json`.
 */
export function tofuPlanArgs(planFile: string, varFile?: string): string[] {
  return ['plan', '-detailed-exitcode', '-lock=false', '-input=false', '-no-color', `-out=${planFile}`, ...(varFile ? [`-var-file=${varFile}`] : [])];
}

export const tofuShowPlanArgs = (planFile: string): string[] => ['show', '-json', '-no-color', planFile];

/** What `tofu plan -detailed-exitcode` says: 0 nothing to change, 2 changes, anything else an error. */
export type PlanExit = 'in-sync' | 'drifted' | 'error';
export function planExit(code: number | null | undefined): PlanExit {
  if (code === 0) return 'in-sync';
  if (code === 2) return 'drifted';
  return 'error';
}

export interface TofuDiffResource {
  /** The resource's address in the module (`kubernetes_config_map.app`, `module.x.random_pet.y[0]`), or `output.<name>`. */
  address: string;
  status: DiffStatus;
  /** The planned actions (`update`, `delete`, `create`, …), without values. */
  diff?: string;
  /**
   * tofu found the object changed outside tofu (the plan's `resource_drift`) and plans to change
   * it back. Not said of an in-sync resource: providers report attributes the server fills in
   * (resourceVersion and the like) as drift that changes no plan.
   */
  changedOutside?: boolean;
}

export interface TofuDiff {
  resources: TofuDiffResource[];
  summary: DiffSummary;
}

/** Entries read from the plan JSON (real plans stay far below). */
const MAX_ENTRIES = 10_000;
const KNOWN_ACTIONS = new Set(['no-op', 'create', 'read', 'update', 'delete', 'forget']);

interface PlanChange {
  address?: unknown;
  mode?: unknown;
  change?: { actions?: unknown };
}

function actionsOf(c: PlanChange): string[] {
  const a = c.change?.actions;
  if (!Array.isArray(a)) return [];
  return a.filter((x): x is string => typeof x === 'string' && KNOWN_ACTIONS.has(x));
}

function entries(v: unknown): PlanChange[] {
  if (!Array.isArray(v)) return [];
  return v.slice(0, MAX_ENTRIES).filter((e): e is PlanChange => typeof e === 'object' && e !== null && typeof (e as PlanChange).address === 'string');
}

/**
 * The diff of a saved plan (`tofu show -json <plan>`): each managed resource in-sync (no-op),
 * missing (to create) or drifted (to update, replace or delete: `diff` names the actions); an
 * output whose value would change is drifted too. Only addresses and action names are read.
 */
export function planDiff(showJson: string): TofuDiff {
  let plan: unknown;
  try {
    plan = JSON.parse(showJson);
  } catch {
    throw new CommandFailure('tofu_failed', 'tofu show -json did not print JSON');
  }
  if (typeof plan !== 'object' || plan === null || Array.isArray(plan)) throw new CommandFailure('tofu_failed', 'tofu show -json did not print an object');
  const p = plan as { resource_changes?: unknown; resource_drift?: unknown; output_changes?: unknown };
  const outside = new Set(entries(p.resource_drift).filter((d) => d.mode !== 'data').map((d) => d.address as string));
  const resources: TofuDiffResource[] = [];
  for (const c of entries(p.resource_changes)) {
    if (c.mode === 'data') continue;
    const address = c.address as string;
    const actions = actionsOf(c);
    const changedOutside = outside.has(address) ? { changedOutside: true } : {};
    if (actions.length === 0 || actions.every((a) => a === 'no-op' || a === 'read')) resources.push({ address, status: 'in-sync' });
    else if (actions.length === 1 && actions[0] === 'create') resources.push({ address, status: 'missing', diff: 'create' });
    else resources.push({ address, status: 'drifted', diff: actions.join(', '), ...changedOutside });
  }
  const outputs = p.output_changes;
  if (typeof outputs === 'object' && outputs !== null && !Array.isArray(outputs)) {
    for (const [name, c] of Object.entries(outputs).slice(0, MAX_ENTRIES)) {
      const actions = actionsOf({ change: c as { actions?: unknown } });
      if (actions.some((a) => a !== 'no-op')) resources.push({ address: `output.${name}`, status: 'drifted', diff: actions.join(', ') });
    }
  }
  resources.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
  return { resources, summary: summarize(resources) };
}
