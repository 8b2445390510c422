/**
 * Failure classification: which failures of git, helm, tofu and the API server are permanent (not
 * retried) and which transient, on the messages the real tools print.
 */
import assert from 'node:assert/strict';
import { COMMAND_ERRORS, CommandFailure, TetherError, classifyFailure } from '../../common/errors.ts';
import { gitFailureCode } from '../../cluster-agent/git/git.plan.ts';
import { helmFailureCode } from '../../cluster-agent/helm/helm.plan.ts';
import { kubeRejected } from '../../cluster-agent/kube/kube.ts';
import { tofuFailureCode } from '../../cluster-agent/tofu/tofu.plan.ts';

describe('failure classification (permanent vs transient)', () => {
  it('every command error code says whether it is retryable, and a CommandFailure carries exactly that', () => {
    for (const [code, { retryable }] of Object.entries(COMMAND_ERRORS)) {
      const e = new CommandFailure(code as keyof typeof COMMAND_ERRORS, 'x');
      assert.equal(e.retryable, retryable, code);
      assert.deepEqual(classifyFailure(e), { code, retryable });
    }
    assert.deepEqual(classifyFailure(new Error('bug')), { code: 'executor_error', retryable: false });
    assert.deepEqual(classifyFailure(new TetherError('transport_error', 'x', { retryable: true })), { code: 'executor_error', retryable: false });
    // The names both agents once spelled differently exist once.
    for (const old of ['unsupported_type', 'tofu_error', 'step_failed']) assert.ok(!(old in COMMAND_ERRORS), old);
  });

  it('git: a missing repository or ref is permanent, a network failure transient', () => {
    assert.equal(gitFailureCode("fatal: '/tmp/nope.git' does not appear to be a git repository\nfatal: Could not read from remote repository."), 'git_not_found');
    assert.equal(gitFailureCode("fatal: couldn't find remote ref no-such-branch"), 'git_not_found');
    assert.equal(gitFailureCode("remote: Repository not found.\nfatal: repository 'https://github.com/x/y/' not found"), 'git_not_found');
    assert.equal(gitFailureCode('fatal: unable to access \'https://git.example/x/\': Could not resolve host: git.example'), 'git_error');
    assert.equal(gitFailureCode('fatal: unable to access \'https://127.0.0.1:1/x/\': Failed to connect to 127.0.0.1 port 1'), 'git_error');
  });

  it('helm: template, values-schema and manifest errors are permanent; an unreachable cluster or a busy release transient', () => {
    assert.equal(helmFailureCode('Error: parse error at (demo/templates/cm.yaml:4): unexpected "}" in operand'), 'helm_invalid');
    assert.equal(helmFailureCode('Error: UPGRADE FAILED: template: demo/templates/cm.yaml:3:10: executing "demo/templates/cm.yaml" at <.Values.x.y>: nil pointer evaluating interface {}.y'), 'helm_invalid');
    assert.equal(helmFailureCode('Error: values don\'t meet the specifications of the schema(s) in the following chart(s):\ndemo:\n- replicas: Invalid type'), 'helm_invalid');
    assert.equal(helmFailureCode('Error: unable to build kubernetes objects from release manifest: resource mapping not found for name: "x" namespace: "" from "": no matches for kind "Deployement" in version "apps/v1"'), 'helm_invalid');
    assert.equal(helmFailureCode('Error: INSTALLATION FAILED: ConfigMap "x" is invalid: metadata.name: Invalid value: "X_Y"'), 'helm_invalid');
    assert.equal(helmFailureCode('Error: Kubernetes cluster unreachable: Get "https://127.0.0.1:6443/version": dial tcp 127.0.0.1:6443: connect: connection refused'), 'helm_failed');
    assert.equal(helmFailureCode('Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress'), 'helm_failed');
  });

  it('tofu: configuration and variable errors are permanent; registry, provider API and lock failures transient', () => {
    assert.equal(tofuFailureCode('Error: Invalid value for variable\n\n  on main.tf line 1:\n  This was checked by the validation rule at main.tf:4,3-13.'), 'tofu_invalid');
    assert.equal(tofuFailureCode('Error: Reference to undeclared input variable\n\n  on main.tf line 3, in output "x":'), 'tofu_invalid');
    assert.equal(tofuFailureCode('Error: Unsupported argument\n\n  on main.tf line 2'), 'tofu_invalid');
    assert.equal(tofuFailureCode('Error: Failed to query available provider packages\n\nCould not retrieve the list of available versions for provider hashicorp/random: could not connect to registry.opentofu.org: dial tcp: lookup registry.opentofu.org: no such host'), 'tofu_failed');
    assert.equal(tofuFailureCode('Error: Error acquiring the state lock\n\nLock Info:\n  ID: 1234'), 'tofu_failed');
  });

  it('the API server: schema, validation and RBAC refusals are permanent; conflicts, throttling and 5xx transient', () => {
    for (const code of [400, 403, 404, 422]) assert.equal(kubeRejected({ code }), true, String(code));
    for (const code of [401, 408, 409, 429, 500, 503]) assert.equal(kubeRejected({ code }), false, String(code));
    assert.equal(kubeRejected(new Error('ECONNREFUSED')), false);
    // Server-side apply's answer to a field of the wrong type (what kube-apiserver 1.34 sends).
    const typed = { code: 500, body: JSON.stringify({ message: 'failed to create typed patch object (tenant-a/bad; /v1, Kind=ConfigMap): .data.key: expected string' }) };
    assert.equal(kubeRejected(typed), true);
  });
});
