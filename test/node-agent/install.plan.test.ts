/**
 * The install plan (pure) and its execution against a temporary root: files written there, host
 * commands never executed (a recording fake runner proves it), and a second run changes nothing.
 */
import assert from 'node:assert/strict';
import { readFileSync, statSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { planInstall, renderPlan, MODULES_LOAD_FILE, SYSCTL_FILE, CONTAINERD_CONFIG, KUBEADM_CONFIG, type InstallFacts, type InstallOptions } from '../../node-agent/install/install.plan.ts';
import { executePlan, hostCommandsAllowed } from '../../node-agent/install/install.run.ts';
import { runInstall } from '../../node-agent/install/install.command.ts';
import type { Runner } from '../../node-agent/process/run.ts';
import { removeDir, tempDir } from '../support/control-plane.ts';

const freshHost = (): InstallFacts => ({
  files: {},
  modulesActive: { overlay: false, br_netfilter: false, wireguard: false },
  modulesAvailable: { overlay: true, br_netfilter: true, wireguard: true },
  sysctls: { 'net.ipv4.ip_forward': '0', 'net.bridge.bridge-nf-call-iptables': null, 'net.bridge.bridge-nf-call-ip6tables': null },
  binaries: { containerd: false, kubelet: false, kubeadm: false, kubectl: false },
  packageManager: 'apt',
  servicesEnabled: { containerd: false, kubelet: false },
  joined: false,
});
const opts = (o: Partial<InstallOptions> = {}): InstallOptions => ({ root: '/', nodeName: 'n1', controlPlaneNode: true, kubernetesVersion: 'v1.33', ...o });

/** A fake runner that records what would have run and succeeds; it stands in for the host in these tests. */
function fakeRunner(): { run: Runner; calls: string[][] } {
  const calls: string[][] = [];
  return { calls, run: async (file, args) => (calls.push([file, ...args]), { ok: true, exitCode: 0, stdout: '', stderr: '', missing: false }) };
}

describe('node agent: install plan', () => {
  it('orders the steps modules → sysctls → runtime → kubernetes → join', () => {
    assert.deepEqual(planInstall(freshHost(), opts()).map((s) => s.id), ['kernel-modules', 'sysctls', 'container-runtime', 'kubernetes', 'join']);
  });

  it('on a fresh host every action is needed; the first control-plane node runs kubeadm init', () => {
    const plan = planInstall(freshHost(), opts());
    for (const s of plan) assert.ok(s.actions.every((a) => a.needed), s.id);
    const join = plan.at(-1)!.actions.map((a) => a.action);
    assert.deepEqual(join.at(-1), { kind: 'run', argv: ['kubeadm', 'init', '--config', KUBEADM_CONFIG] });
  });

  it('on a prepared host nothing is needed (each step checks before it changes)', () => {
    const first = planInstall(freshHost(), opts());
    const files = Object.fromEntries(first.flatMap((s) => s.actions).flatMap((a) => (a.action.kind === 'write-file' ? [[a.action.path, a.action.content]] : [])));
    const done: InstallFacts = {
      files: { ...files, '/etc/apt/keyrings/kubernetes-apt-keyring.asc': 'key' },
      modulesActive: { overlay: true, br_netfilter: true, wireguard: true },
      modulesAvailable: { overlay: true, br_netfilter: true, wireguard: true },
      sysctls: { 'net.ipv4.ip_forward': '1', 'net.bridge.bridge-nf-call-iptables': '1', 'net.bridge.bridge-nf-call-ip6tables': '1' },
      binaries: { containerd: true, kubelet: true, kubeadm: true, kubectl: true },
      packageManager: 'apt',
      servicesEnabled: { containerd: true, kubelet: true },
      joined: true,
    };
    const plan = planInstall(done, opts());
    assert.deepEqual(plan.flatMap((s) => s.actions.filter((a) => a.needed).map((a) => `${s.id}: ${JSON.stringify(a.action)}`)), []);
    assert.match(renderPlan(plan, { root: '/', hostCommands: true }), /5\. .*: done/);
  });

  it('a worker without join parameters is blocked, with them it joins (token only in the 0600 file)', () => {
    const blocked = planInstall(freshHost(), opts({ controlPlaneNode: false })).at(-1)!;
    assert.equal(blocked.actions[0]!.action.kind, 'blocked');
    const join = planInstall(freshHost(), opts({ controlPlaneNode: false, join: { apiServerEndpoint: '10.0.0.1:6443', token: 'abcdef.0123456789abcdef', caCertHash: 'sha256:00' } })).at(-1)!;
    const file = join.actions[0]!.action;
    assert.ok(file.kind === 'write-file' && file.mode === 0o600 && file.secret && file.content.includes('abcdef.0123456789abcdef'));
    const run = join.actions[1]!.action;
    assert.ok(run.kind === 'run' && !run.argv.join(' ').includes('abcdef'));
  });

  it('leaves out the wireguard module where the kernel has none (wireguard-go serves instead)', () => {
    const f = freshHost();
    f.modulesAvailable.wireguard = false;
    const step = planInstall(f, opts())[0]!;
    assert.ok(!step.actions.some((a) => a.action.kind === 'run' && a.action.argv.includes('wireguard')));
  });

  it('uses dnf where there is no apt-get', () => {
    const f = { ...freshHost(), packageManager: 'dnf' as const };
    const argv = planInstall(f, opts()).flatMap((s) => s.actions).flatMap((a) => (a.action.kind === 'run' ? [a.action.argv.join(' ')] : []));
    assert.ok(argv.includes('dnf install -y containerd'));
    assert.ok(argv.some((a) => a.startsWith('dnf install -y kubelet kubeadm kubectl')));
  });

  it('host commands run only on the real root and never with TETHER_NODE_NO_HOST_CHANGES=1', () => {
    assert.equal(hostCommandsAllowed('/', {}), true);
    assert.equal(hostCommandsAllowed('/tmp/x', {}), false);
    assert.equal(hostCommandsAllowed('/', { TETHER_NODE_NO_HOST_CHANGES: '1' }), false);
  });

  describe('executed against a temporary root', () => {
    let root: string;
    before(() => {
      root = tempDir('tether-install-');
    });
    after(() => removeDir(root));

    it('writes the files under the root, dry-runs every host command, and a second run changes nothing', async () => {
      const fake = fakeRunner();
      const r1 = await runInstall({ config: { nodeId: 'n1', controlPlane: true }, root, dryRun: false, run: fake.run, env: {} });
      assert.equal(r1.hostCommands, false);
      assert.ok(r1.result.ok);
      // The only commands run were the read-only fact probes (systemctl is-enabled), never a change.
      assert.deepEqual(fake.calls.filter((c) => !(c[0] === 'systemctl' && c[1] === 'is-enabled')), []);
      assert.match(readFileSync(join(root, SYSCTL_FILE), 'utf8'), /net\.ipv4\.ip_forward = 1/);
      assert.match(readFileSync(join(root, CONTAINERD_CONFIG), 'utf8'), /SystemdCgroup = true/);
      assert.match(readFileSync(join(root, MODULES_LOAD_FILE), 'utf8'), /overlay\nbr_netfilter/);
      assert.equal(statSync(join(root, SYSCTL_FILE)).mode & 0o777, 0o644);
      assert.ok(r1.result.steps.some((s) => s.status === 'dry-run'));

      const r2 = await runInstall({ config: { nodeId: 'n1', controlPlane: true }, root, dryRun: false, run: fake.run, env: {} });
      const fileActions = r2.plan.flatMap((s) => s.actions).filter((a) => a.action.kind === 'write-file');
      assert.ok(fileActions.length >= 4);
      assert.ok(fileActions.every((a) => !a.needed), 'second run: every file is up to date');
      assert.ok(r2.result.steps.every((s) => !s.notes.some((n) => n.startsWith('wrote'))));
    });

    it('--dry-run writes nothing', async () => {
      const dry = tempDir('tether-install-dry-');
      try {
        const r = await runInstall({ config: { nodeId: 'n1', controlPlane: false }, root: dry, dryRun: true, run: fakeRunner().run, env: {} });
        assert.match(r.text, /host commands not executed/);
        assert.throws(() => statSync(join(dry, SYSCTL_FILE)));
      } finally {
        removeDir(dry);
      }
    });

    it('a file changed meanwhile is detected before writing (checked again at execution)', async () => {
      const r = tempDir('tether-install-race-');
      try {
        const plan = planInstall(freshHost(), opts({ root: r }));
        const content = (plan[1]!.actions[0]!.action as { content: string }).content;
        mkdirSync(join(r, 'etc/sysctl.d'), { recursive: true });
        writeFileSync(join(r, SYSCTL_FILE), content);
        const res = await executePlan(plan, { root: r, hostCommands: false, run: fakeRunner().run });
        assert.ok(!res.steps[1]!.notes.some((n) => n.startsWith('wrote')));
      } finally {
        removeDir(r);
      }
    });

    it('with host commands allowed, a failing command stops the plan (a fake runner stands in for the host)', async () => {
      const r = tempDir('tether-install-fail-');
      try {
        const calls: string[] = [];
        const failing: Runner = async (file, args) => {
          calls.push([file, ...args].join(' '));
          return file === 'modprobe' ? { ok: false, exitCode: 1, stdout: '', stderr: 'modprobe: FATAL: Module overlay not found', missing: false } : { ok: true, exitCode: 0, stdout: '', stderr: '', missing: false };
        };
        const res = await executePlan(planInstall(freshHost(), opts({ root: r })), { root: r, hostCommands: true, run: failing });
        assert.equal(res.ok, false);
        assert.equal(res.steps.length, 1);
        assert.match(res.steps[0]!.notes.join('\n'), /Module overlay not found/);
        assert.deepEqual(calls, ['modprobe overlay']);
      } finally {
        removeDir(r);
      }
    });
  });
});
