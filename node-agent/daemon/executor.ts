/**
 * The node agent's executor: preflight, install and vpn-sync commands from the control plane,
 * each returning an Outcome. The spec is validated again here (the agent never trusts the wire).
 * The specs (common/node-specs.ts, zod/mini) and the preflight and install code are imported when
 * such a command comes, not at daemon start: an idle daemon never loads them (a chunk of the
 * split bundle each; test/node-agent/bundle.test.ts checks what the daemon's start-up loads).
 */
import { isNodeCommandType } from '../../common/command-types.ts';
import { errorMessage, type CommandErrorCode } from '../../common/errors.ts';
import type { Executor, Outcome } from '../../common/agent/runtime.ts';
import type { NodeConfig } from '../config/node.config.ts';
import type { Runner } from '../process/run.ts';
import type { VpnSyncResult } from '../vpn/vpn.sync.ts';

export interface ExecutorDeps {
  config: NodeConfig;
  run: Runner;
  caPem: string;
  /** Serialised VPN sync (shared with the daemon's own periodic sync). */
  syncVpn: () => Promise<VpnSyncResult>;
}

const failed = (code: CommandErrorCode, message: string): Outcome => ({ status: 'failed', error: { code, message } });

export function nodeExecutor(d: ExecutorDeps): Executor {
  return async (command, ctx) => {
    if (!isNodeCommandType(command.type)) return failed('unsupported_command', `a node agent does not run ${command.type} commands`);
    const { nodeSpecSchemas } = await import('../../common/node-specs.ts');
    const spec = nodeSpecSchemas[command.type].safeParse(command.spec);
    if (!spec.success) return failed('invalid_spec', spec.error.issues.map((i) => i.message).join('; '));
    switch (command.type) {
      case 'preflight': {
        const [{ runPreflight }, { renderReport }] = await Promise.all([import('../preflight/preflight.run.ts'), import('../preflight/preflight.report.ts')]);
        const report = await runPreflight({
          controlPlaneNode: d.config.controlPlane,
          wg: d.config.network,
          server: { url: d.config.server, caPem: d.caPem },
          run: d.run,
        });
        ctx.emit(renderReport(report), 'stdout');
        if (report.summary.ok) return { status: 'succeeded', outputs: { report } };
        const fails = report.checks.filter((c) => c.status === 'fail').map((c) => `${c.name}: ${c.detail}`);
        return failed('preflight_failed', `${fails.length} check(s) failed: ${fails.join('; ')}`);
      }
      case 'install': {
        const s = nodeSpecSchemas.install.parse(spec.data);
        const { runInstall } = await import('../install/install.command.ts');
        const r = await runInstall({
          config: d.config,
          root: d.config.installRoot,
          dryRun: s.dryRun ?? false,
          run: d.run,
          signal: ctx.signal,
          onLine: (l) => ctx.emit(l, 'stdout'),
        });
        if (!r.result.ok) return failed('install_failed', r.result.steps.flatMap((x) => (x.status === 'failed' ? x.notes : [])).join('; ') || 'a step failed');
        return { status: 'succeeded', outputs: { steps: r.result.steps, pending: r.result.pending, hostCommands: r.hostCommands } };
      }
      case 'vpn-sync': {
        if (!d.config.network.manageVpn) return failed('vpn_not_managed', 'this node does not manage its VPN (network.manageVpn is false)');
        try {
          const v = await d.syncVpn();
          ctx.emit(`wg0 ${v.wg0.interface} ${v.wg0.address}: ${v.wg0.peers} peers; wg1 ${v.wg1.interface} ${v.wg1.address}: ${v.wg1.peers} users`);
          return { status: 'succeeded', outputs: { vpn: v } };
        } catch (err) {
          return failed('vpn_sync_failed', errorMessage(err));
        }
      }
    }
  };
}
