/**
 * Secret canaries through every failure path of helm, tofu, manifest and flow steps, against the
 * real tools and a real kube-apiserver: each step fails in a way that makes the tool print the
 * secret values (in clear, as a multi-line PEM-like block, base64-encoded, and a short value),
 * then the control plane's SQLite files (as bytes), its API answers (job views and logs) and the
 * agent's own JSON log are scanned for every canary in every encoding.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { startEnvtest, type Envtest } from '../support/envtest.ts';
import { removeDir, startTestControlPlane, tempDir, type TestControlPlane } from '../support/control-plane.ts';
import { bareRepo, createNamespace, createSecret, jobLogs, spawnAgent, submit, waitForJob, type AgentProcess, type BareRepo } from '../cluster-agent/support.ts';
import type { CommandView } from '../../common/wire.ts';
import { databaseText, onPostgres } from '../support/postgres.ts';

const CID = 'canary';
const NS = 'tether-system';
const SINGLE = 'CanarySingle-7f3a9e21d4';
const PEM = [
  '-----BEGIN CANARY PRIVATE KEY-----',
  'MIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEAcanaryPemLineOne',
  'q2V5Q2FuYXJ5UGVtTGluZVR3b0tleUNhbmFyeVBlbUxpbmVUd29LZXlDYW5hcnk',
  '-----END CANARY PRIVATE KEY-----',
].join('\n');
/** Printed by the tools base64-encoded only. */
const ENCODED = 'CanaryEncoded-51c0ffee88';
/** Under 4 characters: masked where it stands as a whole token. */
const SHORT = 'Qz7';

const ref = (key: string) => ({ secretRef: { name: 'canaries', key } });
const REFS = { single: ref('single'), pem: ref('pem'), enc: ref('enc'), short: ref('short') };

/** The forms each canary must not appear in (clear, each PEM line, base64, base64url, hex, URL, JSON). */
function forms(v: string): string[] {
  const b = Buffer.from(v);
  const all = [v, b.toString('base64').replace(/=+$/, ''), b.toString('base64url'), b.toString('hex'), encodeURIComponent(v), JSON.stringify(v).slice(1, -1)];
  if (v.includes('\n')) all.push(...v.split('\n').filter((l) => l.length > 40));
  return all;
}
const NEEDLES = [...new Set([SINGLE, PEM, ENCODED].flatMap(forms))];

const FAIL_CHART = {
  'charts/fail/Chart.yaml': 'apiVersion: v2\nname: fail\nversion: 0.1.0\n',
  'charts/fail/templates/cm.yaml': '{{ fail (printf "single=%s short=%s enc=%s pem=%s" .Values.single .Values.short (b64enc .Values.enc) .Values.pem) }}\n',
};
/** Renders, but the API server refuses the label values, quoting them in its error. */
const REJECTED_CHART = {
  'charts/rejected/Chart.yaml': 'apiVersion: v2\nname: rejected\nversion: 0.1.0\n',
  'charts/rejected/templates/cm.yaml': [
    'apiVersion: v1',
    'kind: ConfigMap',
    'metadata:',
    '  name: {{ .Release.Name }}-rejected',
    '  labels:',
    '    single: "{{ .Values.single }}!"',
    '    short: "{{ .Values.short }}!"',
    '    enc: "{{ b64enc .Values.enc }}!"',
    '    pem: {{ .Values.pem | quote }}',
    'data: {a: b}',
    '',
  ].join('\n'),
};
const PRINTING_MODULE = `
variable "single" { type = string }
variable "pem" { type = string }
variable "enc" { type = string }
variable "short" { type = string }
resource "terraform_data" "leak" {
  provisioner "local-exec" {
    command = "echo single=\${var.single} short=\${var.short}; echo \${base64encode(var.enc)} >&2; printf '%s\\\\n' '\${var.pem}' >&2; exit 3"
  }
}
`;
const OUTPUT_ERROR_MODULE = `
variable "single" { type = string }
variable "pem" { type = string }
variable "enc" { type = string }
variable "short" { type = string }
output "single" { value = tonumber(var.single) }
output "pem" { value = tonumber(var.pem) }
output "enc" { value = tonumber(base64encode(var.enc)) }
output "short" { value = tonumber("\${var.short} x") }
`;
const OK_MODULE = `
variable "single" { type = string }
variable "pem" { type = string }
variable "enc" { type = string }
variable "short" { type = string }
resource "terraform_data" "ok" { input = "fine" }
`;
/** A bundle whose chart fails printing its secretRef values: a deploy compiles to a flow. */
const nsRef = (key: string) => `{secretRef: {name: canaries, key: ${key}, namespace: ${NS}}}`;
const BUNDLE = {
  'bundle/bundle.yaml': [
    'apiVersion: tether.dev/v1',
    'name: canary',
    'version: 1.0.0',
    'resources:',
    '  - name: app',
    '    type: helm',
    '    source: chart',
    `    values: {single: ${nsRef('single')}, pem: ${nsRef('pem')}, enc: ${nsRef('enc')}, short: ${nsRef('short')}}`,
    '',
  ].join('\n'),
  'bundle/chart/Chart.yaml': FAIL_CHART['charts/fail/Chart.yaml'],
  'bundle/chart/templates/cm.yaml': FAIL_CHART['charts/fail/templates/cm.yaml'],
};
/** A manifest in git (the control plane never saw it) with the canaries in invalid fields. */
const BAD_MANIFEST = {
  'manifests/bad/cm.yaml': [
    'apiVersion: v1',
    'kind: ConfigMap',
    'metadata:',
    '  name: canary-bad',
    '  labels:',
    `    single: "${SINGLE}!"`,
    `    short: "${SHORT}!"`,
    `    enc: "${Buffer.from(ENCODED).toString('base64')}!"`,
    `    pem: ${JSON.stringify(PEM)}`,
    'data: {a: b}',
    '',
  ].join('\n'),
};

function databaseBytes(dataDir: string): Buffer {
  return Buffer.concat(['tether.db', 'tether.db-wal', 'tether.db-shm'].map((f) => join(dataDir, f)).filter(existsSync).map((f) => readFileSync(f)));
}

describe('secret canaries never leave the cluster, on any failure path (real helm, tofu, kube-apiserver)', function () {
  this.timeout(300_000);
  let env: Envtest;
  let t: TestControlPlane;
  let dir: string;
  let agent: AgentProcess | undefined;
  let repo: BareRepo;
  const views: CommandView[] = [];
  const logs: string[] = [];
  const osids: string[] = [];

  before(async function () {
    dir = tempDir('tether-canaries-');
    [env, t] = await Promise.all([startEnvtest(), startTestControlPlane({ dataDir: join(dir, 'cp'), allowFileRoots: [dir] })]);
    await t.createCluster(CID);
    await createNamespace(env, NS);
    await createSecret(env, NS, 'canaries', { single: SINGLE, pem: PEM, enc: ENCODED, short: SHORT });
    repo = bareRepo(dir, 'canaries');
    repo.commit({
      ...FAIL_CHART,
      ...REJECTED_CHART,
      'modules/printing/main.tf': PRINTING_MODULE,
      'modules/output-error/main.tf': OUTPUT_ERROR_MODULE,
      'modules/ok/main.tf': OK_MODULE,
      ...BAD_MANIFEST,
      ...BUNDLE,
    });
    agent = spawnAgent({ t, env, namespace: NS, workDir: join(dir, 'work'), token: await t.bootstrapToken(CID, 'cluster-agent') });
    await agent.waitForLog(/cluster agent running/);
  });

  after(async function () {
    await agent?.stop('SIGKILL');
    await t?.close();
    await env?.stop();
    if (dir) removeDir(dir);
  });

  const git = (path: string) => ({ git: { url: repo.url, ref: 'main', path } });
  const helm = (release: string, chart: string) => ({ release, namespace: NS, chart: git(chart), values: REFS });
  const tofu = (stateName: string, module: string) => ({ source: git(module), stateName, vars: REFS });

  /** Runs a command that must fail; keeps its view and logs for the scans. */
  async function failing(type: string, spec: unknown, expect: RegExp): Promise<CommandView> {
    const v = await waitForJob(t, await submit(t, CID, type, spec), 180_000);
    const text = await jobLogs(t, v.id);
    views.push(v);
    logs.push(text);
    assert.equal(v.state, 'failed', `${type}: ${JSON.stringify(v.error)}`);
    // The failure is the one that prints the canaries (masked): the test exercises the path.
    assert.match(`${v.error?.message}\n${text}`, expect, `${type} failed for the expected reason:\n${v.error?.message}\n${text}`);
    assert.match(`${JSON.stringify(v)}\n${text}`, /\*\*\*/, 'the printed secrets were masked');
    return v;
  }

  it('helm: a template that fails with the values, and values the API server refuses', async () => {
    await failing('helm', helm('canary-fail', 'charts/fail'), /single=\*\*\* short=\*\*\* enc=\*\*\* pem=\*\*\*/);
    await failing('helm', helm('canary-rejected', 'charts/rejected'), /is invalid: \[metadata\.labels: Invalid value: "\*\*\*/);
  });

  it('tofu: a provisioner that prints the variables, and outputs that error quoting them', async () => {
    await failing('tofu', tofu('canary-printing', 'modules/printing'), /single=\*\*\* short=\*\*\*/);
    await failing('tofu', tofu('canary-outerr', 'modules/output-error'), /var\.single is "\*\*\*"[\s\S]*cannot convert "\*\*\*"/);
  });

  it('manifest: objects from git the API server refuses, quoting the canaries (in a flow that resolved them)', async () => {
    await failing('flow', {
      steps: [
        { name: 'resolve', type: 'tofu', spec: tofu('canary-ok', 'modules/ok') },
        { name: 'bad', type: 'manifest', spec: { source: git('manifests/bad'), namespace: NS } },
      ],
    }, /Invalid value: "\*\*\*!"/);
  });

  it('flows: the failed step\'s report (outputs.steps[i].error.message) for helm and tofu steps', async () => {
    const h = await failing('flow', { steps: [{ name: 'chart', type: 'helm', spec: helm('canary-flow', 'charts/fail') }] }, /single=\*\*\*/);
    const steps = (h.outputs as { steps: { error?: { message: string } }[] }).steps;
    assert.match(steps[0]!.error!.message, /single=\*\*\*/);
    await failing('flow', { steps: [{ name: 'mod', type: 'tofu', spec: tofu('canary-flow-tf', 'modules/printing') }] }, /exit status 3|exited with code/);
  });

  it('bundles: a deploy whose chart fails with its secretRef values (the compiled flow\'s step report)', async () => {
    await t.admin.request('POST', '/v1/bundles', { name: 'canary', url: repo.url, ref: 'main', path: 'bundle' });
    const d = (await t.admin.request<{ osid: string; jobId: number }>('POST', '/v1/instances', { bundle: 'canary', cluster: CID })).body;
    osids.push(d.osid);
    const v = await waitForJob(t, d.jobId, 180_000);
    const text = await jobLogs(t, v.id);
    views.push(v);
    logs.push(text);
    assert.equal(v.state, 'failed', JSON.stringify(v.error));
    assert.match(v.error!.message, /single=\*\*\* short=\*\*\* enc=\*\*\* pem=\*\*\*/);
    const steps = (v.outputs as { steps: { name: string; error?: { message: string } }[] }).steps;
    assert.match(steps.find((st) => st.name === 'app')!.error!.message, /single=\*\*\*/);
  });

  it('no canary, in any encoding, in the database files, the API answers or the agent\'s log', async () => {
    assert.ok(views.length >= 8, 'every failure path ran');
    // Fresh reads of every job (view and logs) from the API, after everything settled.
    const api: string[] = [];
    for (const v of views) {
      api.push(JSON.stringify((await t.admin.request('GET', `/v1/commands/${v.id}`)).body));
      api.push(JSON.stringify((await t.admin.request('GET', `/v1/commands/${v.id}/logs`)).body));
    }
    for (const osid of osids) api.push(JSON.stringify((await t.admin.request('GET', `/v1/instances/${osid}`)).body));
    const places: [string, Buffer | string][] = [
      // TETHER_TEST_DATABASE=postgres: every row of the PostgreSQL database, as text.
      onPostgres ? ['the PostgreSQL database', await databaseText(resolve(t.dataDir))] : ['the SQLite files', databaseBytes(t.dataDir)],
      ['the API answers', api.join('\n')],
      ['the job logs', logs.join('\n')],
      ["the agent's own log", agent!.output()],
    ];
    for (const [where, text] of places) {
      for (const needle of NEEDLES) assert.equal(text.indexOf(needle), -1, `${JSON.stringify(needle.slice(0, 40))} found in ${where}`);
    }
    // The short value: as a whole token, in the text places (random database bytes may hold any 3 bytes).
    const shortToken = new RegExp(`(?<![\\p{L}\\p{N}_])${SHORT}(?![\\p{L}\\p{N}_])`, 'u');
    for (const [where, text] of places.slice(1)) assert.doesNotMatch(String(text), shortToken, `the short canary in ${where}`);
  });
});
