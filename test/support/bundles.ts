/**
 * Bundle fixtures: a folder of the repo as a file map (for bare test repositories), and an
 * invalid bundle with one problem of every class validation knows, with the messages expected.
 */
import { lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join, relative } from 'node:path';

export type FileMap = Record<string, string | { symlink: string }>;

/** Every file below `dir` (symbolic links as links), keyed `<prefix>/<relative path>`. */
export function readTree(dir: string, prefix: string): FileMap {
  const out: FileMap = {};
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const key = `${prefix}/${relative(dir, p)}`;
      const st = lstatSync(p);
      if (st.isSymbolicLink()) out[key] = { symlink: readlinkSync(p) };
      else if (st.isDirectory()) walk(p);
      else out[key] = readFileSync(p, 'utf8');
    }
  };
  walk(dir);
  return out;
}

const BROKEN_YAML = `name: broken
version: 0.1.0
inputs:
  count: {type: number, default: three}
  flag: {type: integer}
resources:
  - name: web
    type: helm
    source: charts/nochart
    dependsOn: [cache]
    values:
      replicas: {inputRef: replicas}
      host: {valueRef: hostname}
  - name: cache
    type: helm
    source: charts/cache
    dependsOn: [web]
  - name: infra
    type: tofu
    source: modules/empty
  - name: escape
    type: manifest
    source: ../outside
  - name: absolute
    type: manifest
    source: /etc
  - name: linked
    type: helm
    source: charts/link
  - name: leaky
    type: helm
    source: charts/leaky
    values:
      x: {outputRef: {step: nowhere, key: y}}
  - name: worker
    type: manifest
    source: manifests
    dependsOn: [ghost]
outputs:
  secret:
    value: {outputRef: {step: cache, key: password}}
    sensitive: true
`;

/** An invalid bundle (files relative to its folder) with a problem of every class. */
export function brokenBundle(): FileMap {
  return {
    'bundle.yaml': BROKEN_YAML,
    'charts/nochart/values.yaml': 'replicas: 1\n',
    'charts/cache/Chart.yaml': 'apiVersion: v2\nname: cache\nversion: 0.1.0\n',
    'charts/cache/templates/cm.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cache\n',
    'charts/link': { symlink: '/tmp' },
    'charts/leaky/Chart.yaml': 'apiVersion: v2\nname: leaky\nversion: 0.1.0\n',
    'charts/leaky/templates/passwd.yaml': { symlink: '/etc/passwd' },
    'modules/empty/README.md': 'no module here\n',
    'manifests/cm.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: worker\n',
  };
}

/** What validation must say about {@link brokenBundle}: one pattern per problem. */
export const BROKEN_BUNDLE_PROBLEMS: RegExp[] = [
  /bundle\.yaml:\d+: inputs\.count\.default: default "three" is not a number/,
  /bundle\.yaml:\d+: inputs\.flag\.type: /,
  /bundle\.yaml:\d+: resources\[0\]\.values\.replicas\.inputRef: unknown input "replicas"/,
  /bundle\.yaml:\d+: resources\[0\]\.values\.host\.valueRef: unknown valueRef "hostname"/,
  /bundle\.yaml:\d+: resources\[0\]\.dependsOn: dependency cycle: web -> cache -> web/,
  /bundle\.yaml:\d+: resources\[0\]\.source: "charts\/nochart" is not a Helm chart \(no Chart\.yaml\)/,
  /bundle\.yaml:\d+: resources\[2\]\.source: "modules\/empty" is not an OpenTofu module \(no \*\.tf file\)/,
  /bundle\.yaml:\d+: resources\[3\]\.source: "\.\.\/outside" leaves the bundle folder/,
  /bundle\.yaml:\d+: resources\[4\]\.source: "\/etc" is absolute/,
  /bundle\.yaml:\d+: resources\[5\]\.source: "charts\/link" leads outside the bundle \(a symbolic link\)/,
  /charts\/leaky\/templates\/passwd\.yaml: resources\[6\]\.source: symbolic link "charts\/leaky\/templates\/passwd\.yaml" leads outside the bundle/,
  /bundle\.yaml:\d+: resources\[6\]\.values\.x\.outputRef\.step: unknown resource "nowhere"/,
  /bundle\.yaml:\d+: resources\[7\]\.dependsOn\[0\]: unknown resource "ghost"/,
  /bundle\.yaml:\d+: outputs\.secret\.sensitive: a sensitive output is an outputRef to a tofu resource/,
];

/** A one-object bundle (a ConfigMap as a plain manifest, folder cfg/): drift.e2e.test.ts and the drift benchmark. */
export const CONFIG_BUNDLE = {
  'cfg/bundle.yaml': `apiVersion: tether.dev/v1
name: cfg
version: 1.0.0
type: cfg
description: One ConfigMap.
inputs:
  message: {type: string, default: hello}
resources:
  - name: config
    type: manifest
    source: manifests
`,
  'cfg/manifests/configmap.yaml': `apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  greeting: hello
`,
};
