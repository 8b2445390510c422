/**
 * VPN admin routes (bearer token): the cluster's VPN, and user peers with their client configs.
 * The agent side (node agents register keys, get addresses and peers) is in agent.routes.ts.
 */
import { Router, type Response } from 'express';
import { z } from 'zod';
import type { AccountsService } from '../accounts/accounts.service.ts';
import type { VpnService } from '../vpn/vpn.service.ts';
import { createVpnUserSchema } from '../vpn/vpn.schemas.ts';
import { cidSchema } from '../../common/wire.ts';
import { requireAdmin } from './auth.ts';

export const userId = z.string().regex(/^vu-[a-z0-9]{10}$/, 'a VPN user id (vu-…)');

/** Mounted at /v1/clusters/:cid/vpn. */
export function vpnAdminRoutes(deps: { accounts: AccountsService; vpn: VpnService }): Router {
  const r = Router({ mergeParams: true });
  r.use(requireAdmin(deps.accounts));
  const scope = (req: { params: Record<string, string | undefined> }, res: Response) => ({ aid: res.locals.aid!, cid: cidSchema.parse(req.params.cid) });
  r.get('/', async (req, res) => {
    const { aid, cid } = scope(req, res);
    res.json(await deps.vpn.clusterView(aid, cid));
  });
  r.post('/users', async (req, res) => {
    const { aid, cid } = scope(req, res);
    res.status(201).json(await deps.vpn.createUser(aid, cid, createVpnUserSchema.parse(req.body)));
  });
  r.get('/users/:uid/config', async (req, res) => {
    const { aid, cid } = scope(req, res);
    res.json(await deps.vpn.userConfig(aid, cid, userId.parse(req.params.uid)));
  });
  r.delete('/users/:uid', async (req, res) => {
    const { aid, cid } = scope(req, res);
    await deps.vpn.revokeUser(aid, cid, userId.parse(req.params.uid));
    res.status(204).end();
  });
  return r;
}
