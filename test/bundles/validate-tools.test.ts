/**
 * `tether bundles validate` with the real helm and tofu: charts rendered with the bundle's
 * defaults, modules checked by `tofu validate` after an init without backend; a template syntax
 * error or a module error fails validation; a missing tool or providers that cannot be installed
 * offline are said, not failed on.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { runCli } from '../support/cli.ts';
import { removeDir, REPO_ROOT, tempDir } from '../support/control-plane.ts';
import { toolPath } from '../support/toolchain.ts';
import { offlineTofurc } from '../cluster-agent/support.ts';

function write(root: string, files: Record<string, string>): void {
  for (const [p, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, p)), { recursive: true });
    writeFileSync(join(root, p), text);
  }
}

const BUNDLE = (resources: string) => `apiVersion: tether.dev/v1\nname: checked\nversion: 1.0.0\ninputs:\n  greeting: {type: string, default: hello}\nresources:\n${resources}`;

describe('tether bundles validate with helm and tofu', function () {
  this.timeout(180_000);
  let dir: string;
  let env: NodeJS.ProcessEnv;
  const validate = (args: string[], extra: NodeJS.ProcessEnv = {}) => runCli(['bundles', 'validate', ...args], { ...env, ...extra });

  before(() => {
    dir = tempDir('tether-validate-tools-');
    env = { HOME: dir, TETHER_HELM_BIN: toolPath('helm'), TETHER_TOFU_BIN: toolPath('tofu'), TF_CLI_CONFIG_FILE: offlineTofurc(dir) };
  });
  after(() => removeDir(dir));

  it('renders the example bundles\' charts and checks their module: valid', async () => {
    for (const name of ['webapp', 'database']) {
      const r = await validate([join(REPO_ROOT, 'bundles', name)]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /helm \S+: passed \(helm template rendered the chart/);
      if (name === 'database') assert.match(r.stdout, /tofu credentials: passed/);
    }
  });

  it('fails a chart with a template syntax error, naming the resource and helm\'s message', async () => {
    const b = join(dir, 'bad-chart');
    write(b, {
      'bundle.yaml': BUNDLE('  - name: web\n    type: helm\n    source: chart\n    values: {greeting: {inputRef: greeting}}\n'),
      'chart/Chart.yaml': 'apiVersion: v2\nname: web\nversion: 0.1.0\n',
      'chart/templates/cm.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata:\n  greeting: {{ .Values.greeting | quote }\n',
    });
    const r = await validate([b]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /chart\/templates: resources\[0\]: helm template: .*(parse error|unexpected)/);
    assert.match(r.stderr, /the bundle is invalid/);
    const json = JSON.parse((await validate([b, '--json'])).stdout) as { valid: boolean; checks: { resource: string; status: string }[] };
    assert.equal(json.valid, false);
    assert.deepEqual(json.checks, [{ resource: 'web', tool: 'helm', status: 'failed' }]);
    // Static checks alone do not see it (the reason the tools run).
    assert.equal((await validate([b, '--no-tools'])).code, 0);
  });

  it('fails a module tofu validate refuses, with the file and line', async () => {
    const b = join(dir, 'bad-module');
    write(b, {
      'bundle.yaml': BUNDLE('  - name: infra\n    type: tofu\n    source: module\n'),
      'module/main.tf': 'resource "terraform_data" "x" {\n  input = "a"\n  no_such_argument = 1\n}\n',
    });
    const r = await validate([b]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /module\/main\.tf:3: resources\[0\]: tofu validate: Unsupported argument/);
  });

  it('says when a tool is not installed or providers cannot be installed offline, and does not fail for it', async () => {
    const missing = await validate([join(REPO_ROOT, 'bundles', 'webapp')], { TETHER_HELM_BIN: join(dir, 'no-helm') });
    assert.equal(missing.code, 0, missing.stdout + missing.stderr);
    assert.match(missing.stdout, /helm app: skipped \(.*no-helm is not installed: the chart was not rendered/);

    const b = join(dir, 'needs-provider');
    write(b, {
      'bundle.yaml': BUNDLE('  - name: rnd\n    type: tofu\n    source: module\n'),
      'module/main.tf': 'terraform {\n  required_providers {\n    random = { source = "hashicorp/random" }\n  }\n}\nresource "random_id" "x" {\n  byte_length = 4\n}\n',
    });
    const r = await validate([b]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /tofu rnd: skipped \(tofu init could not install the module's providers .*TF_CLI_CONFIG_FILE/);
  });
});
