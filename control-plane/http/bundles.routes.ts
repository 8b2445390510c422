/**
 * Bundle sources (mounted at /v1/bundles) and instances (mounted at /v1/instances): admin API,
 * bearer token, account-scoped, bodies parsed with zod, errors as {error:{code,message}}.
 */
import { Router, type Response } from 'express';
import { z } from 'zod';
import { dnsLabel } from '../../common/specs.ts';
import { cidSchema } from '../../common/wire.ts';
import type { AccountsService } from '../accounts/accounts.service.ts';
import type { BundlesService } from '../bundles/bundles.service.ts';
import { deploySchema, desiredStateSchema, driftSettingsSchema, osidParam, redeploySchema, registerBundleSchema } from '../bundles/bundles.wire.ts';
import { requireAdmin } from './auth.ts';
import { PAGE_LIMIT_DEFAULT, cursorParam, pageLimit } from '../pagination.ts';

const aidOf = (res: Response) => res.locals.aid!;
/** A version number in a path: digits only, at most 10 (parsed before any lookup). */
export const versionParam = z.string().regex(/^[1-9][0-9]{0,9}$/, 'a version is a positive whole number').transform(Number).pipe(z.number().int().max(2_147_483_647));
/** A page of versions: the newest `limit` (default 100) below `before`, oldest first. */
export const versionsQuery = z.object({
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  before: z.coerce.number().int().min(1).max(2_147_483_647).optional(),
});
export const listInstancesQuery = z.object({ cluster: cidSchema.optional(), limit: pageLimit, cursor: cursorParam });
export const deleteQuery = z.object({ timeoutSeconds: z.coerce.number().int().min(1).max(86_400).optional() });

export function bundleRoutes(deps: { accounts: AccountsService; bundles: BundlesService }): Router {
  const { bundles } = deps;
  const r = Router();
  r.use(requireAdmin(deps.accounts));
  r.post('/', async (req, res) => {
    const { source, created, commit } = await bundles.registerSource(aidOf(res), registerBundleSchema.parse(req.body));
    res.status(created ? 201 : 200).json({ ...source, commit, created });
  });
  r.get('/', async (_req, res) => {
    res.json({ bundles: await bundles.listSources(aidOf(res)) });
  });
  r.get('/:name', async (req, res) => {
    res.json(await bundles.getSource(aidOf(res), dnsLabel().parse(req.params.name)));
  });
  r.delete('/:name', async (req, res) => {
    await bundles.deleteSource(aidOf(res), dnsLabel().parse(req.params.name));
    res.status(204).end();
  });
  return r;
}

export function instanceRoutes(deps: { accounts: AccountsService; bundles: BundlesService }): Router {
  const { bundles } = deps;
  const r = Router();
  r.use(requireAdmin(deps.accounts));
  r.post('/', async (req, res) => {
    res.status(202).json(await bundles.deploy(aidOf(res), deploySchema.parse(req.body)));
  });
  r.get('/', async (req, res) => {
    const q = listInstancesQuery.parse(req.query);
    res.json(await bundles.list(aidOf(res), { cid: q.cluster, limit: q.limit ?? PAGE_LIMIT_DEFAULT, cursor: q.cursor }));
  });
  r.get('/:osid', async (req, res) => {
    res.json(await bundles.get(aidOf(res), osidParam.parse(req.params.osid)));
  });
  r.patch('/:osid', async (req, res) => {
    const osid = osidParam.parse(req.params.osid);
    res.json(await bundles.setDriftSettings(aidOf(res), osid, driftSettingsSchema.parse(req.body ?? {})));
  });
  r.get('/:osid/versions', async (req, res) => {
    const osid = osidParam.parse(req.params.osid);
    res.json({ versions: await bundles.versions(aidOf(res), osid, versionsQuery.parse(req.query)) });
  });
  r.get('/:osid/versions/:version', async (req, res) => {
    res.json(await bundles.version(aidOf(res), osidParam.parse(req.params.osid), versionParam.parse(req.params.version)));
  });
  r.post('/:osid/deploy', async (req, res) => {
    res.status(202).json(await bundles.redeploy(aidOf(res), osidParam.parse(req.params.osid), redeploySchema.parse(req.body ?? {})));
  });
  r.post('/:osid/diff', async (req, res) => {
    const q = deleteQuery.parse(req.query);
    const r = await bundles.diff(aidOf(res), osidParam.parse(req.params.osid), q.timeoutSeconds, desiredStateSchema.parse(req.body ?? {}));
    res.status(r.reused ? 200 : 202).json(r);
  });
  r.post('/:osid/sync', async (req, res) => {
    const q = deleteQuery.parse(req.query);
    res.status(202).json(await bundles.sync(aidOf(res), osidParam.parse(req.params.osid), q.timeoutSeconds, desiredStateSchema.parse(req.body ?? {})));
  });
  r.delete('/:osid', async (req, res) => {
    const q = deleteQuery.parse(req.query);
    res.status(202).json(await bundles.delete(aidOf(res), osidParam.parse(req.params.osid), q.timeoutSeconds));
  });
  return r;
}
