/** preflight = gather this host's facts, then decide (pure). */
import { evaluate, type PreflightReport } from './preflight.checks.ts';
import { gatherFacts, type GatherOptions } from './preflight.facts.ts';

export async function runPreflight(o: GatherOptions): Promise<PreflightReport> {
  return evaluate(await gatherFacts(o), { controlPlaneNode: o.controlPlaneNode });
}
