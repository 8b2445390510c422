/**
 * Bundles without processes: validation of the examples and of a bundle with every problem class
 * (real folders, symbolic links included), module inspection, inputs, OSIDs, compilation to
 * flows (stable topological order, references, delete in reverse) and instance outputs.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { flowSpecSchema, findRefs } from '../../common/specs.ts';
import { validateBundleDir } from '../../control-plane/bundles/bundle-fs.ts';
import { compileBundle, instanceOutputs, newOsid, resolveInputs, topologicalOrder, NAMESPACE_STEP, type InstanceContext } from '../../control-plane/bundles/compile.ts';
import { parseTfModule } from '../../control-plane/bundles/tf-module.ts';
import { formatProblems, validateBundle, type BundleFs } from '../../control-plane/bundles/validate.ts';
import { INPUT_TYPES, RESOURCE_TYPES, VALUE_REFS, topLevelSchema, resourceSchema, type Bundle, type BundleResource } from '../../control-plane/bundles/bundle.schema.ts';
import { parseSets, splitUrlFlags } from '../../control-plane/cli/bundles.commands.ts';
import { removeDir, REPO_ROOT, tempDir } from '../support/control-plane.ts';
import { BROKEN_BUNDLE_PROBLEMS, brokenBundle, type FileMap } from '../support/bundles.ts';

function writeTree(root: string, files: FileMap): void {
  for (const [p, content] of Object.entries(files)) {
    const f = join(root, p);
    mkdirSync(dirname(f), { recursive: true });
    if (typeof content === 'string') writeFileSync(f, content);
    else symlinkSync(content.symlink, f);
  }
}

/** A folder-less BundleFs: every source is a folder with the given files. */
function memoryFs(files: Record<string, string>): BundleFs {
  return {
    facts(rel) {
      const prefix = rel === '.' ? '' : `${rel}/`;
      const inside = Object.keys(files).filter((f) => f.startsWith(prefix));
      if (inside.length === 0) return { kind: 'missing' };
      return { kind: 'dir', files: inside.map((f) => f.slice(prefix.length)).filter((f) => !f.includes('/')), escapingLinks: [] };
    },
    read: (rel) => files[rel] ?? '',
  };
}

const ctx: InstanceContext = { osid: 'web-ab12c', cluster: 'prod1', clusterDomain: 'prod1.acc01.tether.local', git: { url: 'file:///srv/stacks.git', commit: 'c'.repeat(40), path: 'webapp' } };

describe('bundles: validation', () => {
  let dir: string;
  before(() => {
    dir = tempDir('tether-bundle-unit-');
  });
  after(() => removeDir(dir));

  for (const name of ['webapp', 'database']) {
    it(`the example bundle "${name}" is valid`, () => {
      const r = validateBundleDir(join(REPO_ROOT, 'bundles', name));
      assert.deepEqual(r.problems, [], formatProblems(r.problems));
      assert.equal(r.bundle?.name, name);
    });
  }

  it('reports every problem of a broken bundle at once, each with its file, path and line', () => {
    const root = join(dir, 'broken');
    writeTree(root, brokenBundle());
    const r = validateBundleDir(root);
    assert.equal(r.bundle, undefined);
    const text = formatProblems(r.problems);
    for (const re of BROKEN_BUNDLE_PROBLEMS) assert.match(text, re);
    assert.ok(r.problems.length >= BROKEN_BUNDLE_PROBLEMS.length);
  });

  it('reports YAML errors, unknown fields, duplicates and misplaced values', () => {
    assert.match(formatProblems(validateBundle('name: [\n', memoryFs({})).problems), /bundle\.yaml:\d+: \(root\): invalid YAML/);
    const doc = [
      'name: Bad_Name',
      'version: "1"',
      'colour: blue',
      'resources:',
      '  - {name: a, type: manifest, source: m, values: {x: 1}}',
      '  - {name: a, type: kustomize, source: m}',
      '  - {name: tether-x, type: manifest, source: m}',
    ].join('\n');
    const text = formatProblems(validateBundle(doc, memoryFs({ 'm/cm.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n' })).problems);
    assert.match(text, /bundle\.yaml:1: name: must be lowercase/);
    assert.match(text, /bundle\.yaml:3: colour: unknown field "colour"/);
    assert.match(text, /resources\[0\]\.values: values are for helm resources/);
    assert.match(text, /resources\[1\]\.name: duplicate resource name "a"/);
    assert.match(text, /resources\[1\]\.type: /);
    assert.match(text, /resources\[2\]\.name: must not start with "tether-"/);
  });

  it('checks tofu vars against the module and output keys against what resources report', () => {
    const module = 'variable "needed" {\n  type = string\n}\nvariable "opt" {\n  default = "x"\n}\noutput "token" {\n  value     = "t"\n  sensitive = true\n}\noutput "name" { value = "n" }\n';
    const doc = [
      'name: app',
      'version: 1.0.0',
      'ports: [8080]',
      'resources:',
      '  - {name: db, type: tofu, source: tf, vars: {extra: 1}}',
      '  - name: web',
      '    type: helm',
      '    source: chart',
      '    values: {a: {outputRef: {step: db, key: nope}}, b: {outputRef: {step: db, key: token}}, c: {outputRef: {step: web, key: release}}, d: {hostRef: {port: 9090}}, e: {secretRef: {name: s}}}',
      'outputs:',
      '  leaked: {value: {outputRef: {step: db, key: token}}}',
      '  rev: {value: {outputRef: {step: web, key: version}}}',
      '  ok: {value: {outputRef: {step: db, key: token}}, sensitive: true}',
    ].join('\n');
    const fs = memoryFs({ 'tf/main.tf': module, 'chart/Chart.yaml': 'name: c\nversion: 1.0.0\n' });
    const text = formatProblems(validateBundle(doc, fs).problems);
    assert.match(text, /resources\[0\]\.vars\.extra: module "tf" has no variable "extra"/);
    assert.match(text, /resources\[0\]\.vars: module variable "needed" has no default/);
    assert.match(text, /resources\[1\]\.values\.a\.outputRef\.key: resource "db" \(tofu\) has no output "nope"/);
    assert.match(text, /resources\[1\]\.values\.c\.outputRef\.step: a resource cannot use its own outputs/);
    assert.match(text, /resources\[1\]\.values\.d\.hostRef: port 9090 is not declared in ports/);
    assert.match(text, /resources\[1\]\.values\.e\.secretRef: invalid secretRef: key/);
    assert.match(text, /outputs\.leaked: output "token" of "db" is sensitive: mark this output sensitive/);
    assert.match(text, /outputs\.rev\.value\.outputRef\.key: resource "web" \(helm\) has no output "version"/);
    assert.doesNotMatch(text, /outputs\.ok/);
    assert.doesNotMatch(text, /values\.b/);
  });

  it('reads variables and outputs of a module, ignoring comments, strings and heredocs', () => {
    const facts = parseTfModule([
      '# output "commented" {}\nvariable "a" {\n  description = "has { braces } and \\"quotes\\""\n}\nvariable b {\n  default = { x = "}" }\n}\n',
      'locals {\n  doc = <<EOT\noutput "fake" {\nEOT\n}\noutput "secret" {\n  value = "${var.a}"\n  sensitive = true\n}\noutput "plain" {\n  value = 1 // sensitive = true\n}\n',
    ]);
    assert.deepEqual([...facts.variables.entries()], [['a', { hasDefault: false }], ['b', { hasDefault: true }]]);
    assert.deepEqual([...facts.outputs.entries()], [['secret', { sensitive: true }], ['plain', { sensitive: false }]]);
  });
});

describe('bundles: inputs, OSIDs and compilation', () => {
  const webapp = validateBundleDir(join(REPO_ROOT, 'bundles', 'webapp')).bundle!;
  const database = validateBundleDir(join(REPO_ROOT, 'bundles', 'database')).bundle!;

  it('types --set strings by the input, applies defaults and reports every problem', () => {
    const r = resolveInputs(webapp, { replicas: '3', message: 'Hi' });
    assert.deepEqual(r.problems, []);
    assert.equal(r.values.replicas, 3);
    assert.equal(r.values.message, 'Hi');
    assert.equal(r.values.ingressClass, 'nginx');
    const bad = resolveInputs({ inputs: { n: { type: 'number' }, b: { type: 'boolean' }, req: { type: 'string', required: true } } }, { n: 'x', b: 'yes', other: '1' });
    assert.deepEqual(bad.problems.sort(), ['input "b" must be a boolean (got "yes")', 'input "n" must be a number (got "x")', 'input "req" is required', 'unknown input "other" (inputs: n, b, req)'].sort());
    // An upgrade keeps earlier values unless they are given again.
    assert.equal(resolveInputs(webapp, { replicas: '2' }, { message: 'kept', replicas: 5 }).values.message, 'kept');
    assert.equal(resolveInputs(webapp, { replicas: '2' }, { message: 'kept', replicas: 5 }).values.replicas, 2);
  });

  it('makes OSIDs <type>-<5 lowercase alphanumerics> that are DNS labels', () => {
    for (let i = 0; i < 50; i++) assert.match(newOsid('web'), /^web-[a-z0-9]{5}$/);
    assert.equal(newOsid('db', () => 'x1y2z'), 'db-x1y2z');
    assert.throws(() => newOsid('Bad', () => 'abcde'), /DNS label/);
  });

  it('orders resources topologically (dependsOn and outputRefs), keeping declaration order for ties', () => {
    const r = (name: string, extra: Partial<BundleResource> = {}): BundleResource => ({ name, type: 'helm', source: name, ...extra });
    const order = topologicalOrder([
      r('web', { dependsOn: ['api'] }),
      r('cache'),
      r('api', { values: { db: { outputRef: { step: 'db', key: 'release' } } } }),
      r('db'),
      r('jobs', { dependsOn: ['cache'] }),
    ]);
    assert.deepEqual(order.map((x) => x.name), ['cache', 'db', 'api', 'web', 'jobs']);
  });

  it('compiles an apply flow: namespace first, pinned git sources, control-plane references resolved', () => {
    const inputs = resolveInputs(webapp, { message: 'Hi', replicas: '2' }).values;
    const flow = compileBundle(webapp, inputs, ctx, 'apply');
    assert.ok(flowSpecSchema.safeParse(flow).success, JSON.stringify(flowSpecSchema.safeParse(flow).error?.issues));
    assert.deepEqual(flow.steps.map((s) => s.name), [NAMESPACE_STEP, 'policy', 'app']);
    const [ns, policy, app] = flow.steps;
    assert.equal(ns!.type, 'manifest');
    assert.match((ns!.spec as { manifests: string }).manifests, /"kind":"Namespace".*"name":"web-ab12c"/);
    assert.deepEqual(policy!.spec, { source: { git: { url: ctx.git.url, ref: ctx.git.commit, path: 'webapp/manifests' } }, namespace: 'web-ab12c' });
    assert.equal(app!.type, 'helm');
    const spec = app!.spec as { release: string; namespace: string; chart: unknown; values: Record<string, unknown>; action?: string };
    assert.equal(spec.release, 'app');
    assert.equal(spec.namespace, 'web-ab12c');
    assert.equal(spec.action, undefined);
    assert.deepEqual(spec.chart, { git: { url: ctx.git.url, ref: ctx.git.commit, path: 'webapp/chart' } });
    assert.deepEqual(spec.values, { replicaCount: 2, image: 'nginxinc/nginx-unprivileged:1.27-alpine', message: 'Hi', instance: 'web-ab12c', ingress: { className: 'nginx', host: 'web-ab12c.prod1.acc01.tether.local' } });
  });

  it('leaves secretRefs and outputRefs for the agent; sensitive values never pass the control plane', () => {
    const c = { ...ctx, osid: 'db-ab12c', git: { ...ctx.git, path: 'database' } };
    const flow = compileBundle(database, resolveInputs(database, {}).values, c, 'apply');
    assert.ok(flowSpecSchema.safeParse(flow).success);
    assert.deepEqual(flow.steps.map((s) => `${s.name}:${s.type}`), [`${NAMESPACE_STEP}:manifest`, 'credentials:tofu', 'server:helm']);
    const tofu = flow.steps[1]!.spec as { stateName: string; namespace: string; vars: Record<string, unknown> };
    assert.equal(tofu.stateName, 'credentials');
    assert.equal(tofu.namespace, 'db-ab12c');
    assert.deepEqual(tofu.vars, { username: 'app', database: 'app', instance: 'db-ab12c' });
    const helm = flow.steps[2]!.spec as { values: Record<string, unknown> };
    assert.equal(helm.values.externalHost, 'db-ab12c-5432.prod1.acc01.tether.local');
    assert.deepEqual(findRefs(helm.values).outputs, [
      { step: 'credentials', key: 'username' },
      { step: 'credentials', key: 'database' },
      { step: 'credentials', key: 'password' },
    ]);
  });

  it('compiles a delete flow: resources in reverse order with action delete, the namespace last', () => {
    const b: Bundle = {
      ...database,
      resources: [...database.resources, { name: 'extra', type: 'tofu', source: 'modules/credentials', vars: { username: { outputRef: { step: 'credentials', key: 'username' } }, release: { outputRef: { step: 'server', key: 'release' } }, n: { outputRef: { step: 'server', key: 'revision' } } } }],
    };
    const c = { ...ctx, osid: 'db-ab12c', git: { ...ctx.git, path: 'database' } };
    const flow = compileBundle(b, resolveInputs(b, {}).values, c, 'delete');
    assert.ok(flowSpecSchema.safeParse(flow).success, JSON.stringify(flowSpecSchema.safeParse(flow).error?.issues));
    assert.deepEqual(flow.steps.map((s) => s.name), ['extra', 'server', 'credentials', NAMESPACE_STEP]);
    for (const s of flow.steps) assert.equal((s.spec as { action?: string }).action, 'delete');
    assert.equal((flow.steps[1]!.spec as { values?: unknown }).values, undefined, 'helm uninstall needs no values');
    // tofu destroy keeps its vars; outputs of resources deleted later come from the cluster or are known.
    assert.deepEqual((flow.steps[0]!.spec as { vars: unknown }).vars, {
      username: { secretRef: { name: 'credentials-outputs', key: 'username', namespace: 'db-ab12c' } },
      release: 'server',
      n: null,
    });
  });

  it('computes instance outputs from the flow: plain values, and sensitive ones only as a Secret location', () => {
    const c = { ...ctx, osid: 'db-ab12c' };
    const flowOutputs = {
      steps: [
        { name: NAMESPACE_STEP, type: 'manifest', state: 'succeeded', outputs: { applied: [] } },
        { name: 'credentials', type: 'tofu', state: 'succeeded', outputs: { outputs: { username: 'app', database: 'app' }, sensitiveOutputs: ['password'], outputsSecret: 'credentials-outputs' } },
        { name: 'server', type: 'helm', state: 'succeeded', outputs: { release: 'server', revision: 1 } },
      ],
    };
    const o = instanceOutputs(database, resolveInputs(database, {}).values, c, flowOutputs);
    assert.deepEqual(o.outputs, { endpoint: 'db-ab12c-5432.prod1.acc01.tether.local', service: 'server', username: 'app', database: 'app' });
    assert.deepEqual(o.sensitiveOutputs, { password: { secret: { namespace: 'db-ab12c', name: 'credentials-outputs', key: 'password' }, description: 'Kept only in the Secret credentials-outputs of the instance namespace.' } });
    assert.deepEqual(o.missing, []);
    assert.deepEqual(instanceOutputs(database, {}, c, { steps: [] }).missing.sort(), ['database', 'service', 'username']);
  });
});

describe('bundles: CLI argument handling', () => {
  it('--set takes key=value pairs; values may contain "="', () => {
    const usage = (m: string) => new Error(m);
    assert.deepEqual(parseSets(['a=1', 'msg=x=y', 'empty='], usage), { a: '1', msg: 'x=y', empty: '' });
    assert.throws(() => parseSets(['novalue'], usage), /key=value/);
    assert.throws(() => parseSets(['bad-key=1'], usage), /not an input name/);
  });

  it('bundles register: a --url after the subcommand is the git URL, one before it the control plane', () => {
    const argv = ['node', 'main.ts', '--url', 'https://cp:8443', 'bundles', 'register', 'web', '--url=file:///srv/x.git', '--ref', 'v1'];
    assert.deepEqual(splitUrlFlags(argv, ['bundles', 'register']), { controlPlane: 'https://cp:8443', git: 'file:///srv/x.git' });
    assert.deepEqual(splitUrlFlags(['node', 'main.ts', 'bundles', 'register', 'web', '--url', 'file:///a.git'], ['bundles', 'register']), { git: 'file:///a.git' });
  });
});

describe('bundles: docs/bundle.schema.json', () => {
  it('describes the same fields, types and references as the validator', () => {
    const schema = JSON.parse(readFileSync(join(REPO_ROOT, 'docs/bundle.schema.json'), 'utf8'));
    assert.deepEqual(Object.keys(schema.properties).sort(), Object.keys(topLevelSchema.shape).sort());
    assert.deepEqual(Object.keys(schema.$defs.resource.properties).sort(), Object.keys(resourceSchema.shape).sort());
    assert.deepEqual(schema.$defs.resource.properties.type.enum, [...RESOURCE_TYPES]);
    assert.deepEqual(schema.$defs.input.properties.type.enum, [...INPUT_TYPES]);
    assert.deepEqual(schema.$defs.valueRef.properties.valueRef.enum, [...VALUE_REFS]);
    assert.deepEqual(schema.required, ['name', 'version', 'resources']);
  });
});
