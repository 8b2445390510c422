/**
 * What each added agent keeps in the V8 heap: two heap snapshots of the same server holding `a`
 * and `b` agents, summed by object kind (the snapshot's node type and name: a constructor, a
 * closure's function name, "system / Context", …), and the difference divided by `b - a`.
 *
 *   node --max-old-space-size=8192 bench/heap-diff.ts [--by-owner] <snapshot at a> <a> <snapshot at b> <b> [rows]
 *
 * Take the snapshots with the server started under `--heapsnapshot-signal=SIGWINCH`
 * (`npm run bench -- --only held --held N --server-node-args=--heapsnapshot-signal=SIGWINCH`,
 * the signal sent during the measuring window; the file lands in the server's working directory).
 * Writing a snapshot runs a full GC first, so only what is reachable is counted.
 */
import { readFileSync } from 'node:fs';

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]]; edge_fields: string[]; edge_types: [string[], ...unknown[]] } };
  nodes: number[];
  edges: number[];
  strings: string[];
}

/** Where each node field sits in the flat `nodes` array (a node is `width` numbers). */
function nodeLayout(s: Snapshot) {
  const f = s.snapshot.meta.node_fields;
  return { width: f.length, iType: f.indexOf('type'), iName: f.indexOf('name'), iSize: f.indexOf('self_size'), iEdges: f.indexOf('edge_count'), types: s.snapshot.meta.node_types[0] };
}

interface Tally {
  count: number;
  bytes: number;
}

/**
 * Count and self size per kind ("type name"), and in all. With `byOwner`, the nameless kinds
 * (arrays, contexts, property arrays) are named by the first object that holds them, and how
 * (`array <- object Map.table`), which says whose they are.
 */
export function tally(file: string, byOwner = false): { kinds: Map<string, Tally>; total: Tally } {
  const s = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
  const { width, iType, iName, iSize, types } = nodeLayout(s);
  const owner = byOwner ? owners(s) : undefined;
  const kinds = new Map<string, Tally>();
  const total = { count: 0, bytes: 0 };
  for (let i = 0; i < s.nodes.length; i += width) {
    const type = types[s.nodes[i + iType]!]!;
    // Strings and numbers are named by their value: one kind per type, not per value.
    const named = type === 'object' || type === 'closure' || type === 'hidden' || type === 'native' || type === 'code' || type === 'object shape';
    const name = named ? s.strings[s.nodes[i + iName]!]!.slice(0, 60) : '';
    const own = owner && (type === 'array' || name === 'system / Context' || name === 'system / PropertyArray' || type === 'closure') ? owner.get(i / width) : undefined;
    const key = (name ? `${type} ${name}` : type) + (own ? ` <- ${own}` : '');
    const size = s.nodes[i + iSize]!;
    const t = kinds.get(key) ?? { count: 0, bytes: 0 };
    t.count++;
    t.bytes += size;
    kinds.set(key, t);
    total.count++;
    total.bytes += size;
  }
  return { kinds, total };
}

/** The first retainer of every node that has one: "type name.edge" (index: node ordinal). */
function owners(s: Snapshot): Map<number, string> {
  const { width, iType, iName, iEdges, types: ntypes } = nodeLayout(s);
  const ef = s.snapshot.meta.edge_fields;
  const ew = ef.length;
  const eType = ef.indexOf('type');
  const eName = ef.indexOf('name_or_index');
  const eTo = ef.indexOf('to_node');
  const etypes = s.snapshot.meta.edge_types[0];
  const out = new Map<number, string>();
  let e = 0;
  for (let i = 0; i < s.nodes.length; i += width) {
    const n = s.nodes[i + iEdges]!;
    const from = `${ntypes[s.nodes[i + iType]!]} ${s.strings[s.nodes[i + iName]!]!.slice(0, 40)}`;
    for (let k = 0; k < n; k++, e += ew) {
      const et = etypes[s.edges[e + eType]!]!;
      if (et === 'weak') continue;
      const to = s.edges[e + eTo]! / width;
      if (out.has(to)) continue;
      const label = et === 'element' || et === 'hidden' ? `[${et}]` : `.${s.strings[s.edges[e + eName]!]}`;
      out.set(to, `${from}${label}`);
    }
  }
  return out;
}

function main(): void {
  const byOwner = process.argv.includes('--by-owner');
  const [fa, na, fb, nb, rowsArg] = process.argv.slice(2).filter((a) => a !== '--by-owner');
  if (!fa || !na || !fb || !nb) {
    console.error('usage: bench/heap-diff.ts <snapshot at a> <a> <snapshot at b> <b> [rows]');
    process.exit(2);
  }
  const per = Number(nb) - Number(na);
  if (!(per > 0)) throw new Error('b must hold more agents than a');
  const A = tally(fa, byOwner);
  const B = tally(fb, byOwner);
  const rows: { kind: string; count: number; bytes: number }[] = [];
  for (const key of new Set([...A.kinds.keys(), ...B.kinds.keys()])) {
    const a = A.kinds.get(key) ?? { count: 0, bytes: 0 };
    const b = B.kinds.get(key) ?? { count: 0, bytes: 0 };
    rows.push({ kind: key, count: (b.count - a.count) / per, bytes: (b.bytes - a.bytes) / per });
  }
  rows.sort((x, y) => y.bytes - x.bytes);
  const fmt = (n: number) => n.toFixed(2).padStart(9);
  console.log(`per added agent (${per}): ${((B.total.bytes - A.total.bytes) / per).toFixed(0)} B in ${((B.total.count - A.total.count) / per).toFixed(1)} objects`);
  console.log(`${'objects'.padStart(9)} ${'bytes'.padStart(9)}  kind`);
  for (const r of rows.slice(0, Number(rowsArg ?? 45))) if (Math.abs(r.count) >= 0.05 || Math.abs(r.bytes) >= 4) console.log(`${fmt(r.count)} ${fmt(r.bytes)}  ${r.kind}`);
}

if (import.meta.url === `file://${process.argv[1]}`) main();
