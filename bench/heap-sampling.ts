/**
 * Where the control plane allocates (issue 18): V8's sampling heap profiler over the server's
 * whole life, objects already collected by minor and major GCs included (without them a profile
 * shows only what is still live), written at exit. Two uses:
 *
 *   BENCH_HEAP_SAMPLING_OUT=/tmp/prof npm run bench -- --only throughput --server-node-args=--import=$PWD/bench/heap-sampling.ts
 *       the server writes /tmp/prof-<pid>.heapprofile when it stops (Chrome DevTools opens it too)
 *   node bench/heap-sampling.ts /tmp/prof-<pid>.heapprofile 20000
 *       bytes allocated per command (the run's command count): by function, by the nearest frame
 *       of Tether's own code (control-plane/, common/), and by the innermost npm package
 *
 * Sampling every 16 KB (BENCH_HEAP_SAMPLING_INTERVAL) costs the server some CPU: its CPU figures
 * are not comparable with a run without it.
 */
import { Session } from 'node:inspector';
import { readFileSync, writeFileSync } from 'node:fs';

interface Node {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: Node[];
}

const out = process.env.BENCH_HEAP_SAMPLING_OUT;
if (import.meta.url !== `file://${process.argv[1]}`) {
  // Preloaded (--import): only into the control plane, not into the programs it starts.
  if (out && process.argv[1]?.endsWith('control-plane/cli/main.ts')) {
    const s = new Session();
    s.connect();
    s.post('HeapProfiler.enable');
    s.post('HeapProfiler.startSampling', {
      samplingInterval: Number(process.env.BENCH_HEAP_SAMPLING_INTERVAL ?? 16_384),
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true,
    });
    process.on('exit', () => {
      s.post('HeapProfiler.stopSampling', (err, r) => {
        if (err) console.error('heap sampling', err);
        else writeFileSync(`${out}-${process.pid}.heapprofile`, JSON.stringify(r.profile));
      });
    });
  }
} else {
  const [file, count = '1', top = '30'] = process.argv.slice(2);
  if (!file) throw new Error('usage: node bench/heap-sampling.ts <file.heapprofile> [commands] [rows]');
  const per = Number(count);
  const head = (JSON.parse(readFileSync(file, 'utf8')) as { head: Node }).head;
  const self = new Map<string, number>();
  const ours = new Map<string, number>();
  const pkg = new Map<string, number>();
  let total = 0;
  const name = (f: Node['callFrame']) => `${f.functionName || '(anonymous)'} ${f.url.replace(/^.*?\/(control-plane|common|node_modules)\//, '$1/')}:${f.lineNumber + 1}`;
  const isOurs = (url: string) => /\/(control-plane|common)\//.test(url) && !url.includes('node_modules');
  const add = (m: Map<string, number>, k: string, v: number) => m.set(k, (m.get(k) ?? 0) + v);
  const walk = (n: Node, stack: Node['callFrame'][]) => {
    const s = [...stack, n.callFrame];
    if (n.selfSize > 0) {
      total += n.selfSize;
      add(self, name(n.callFrame), n.selfSize);
      const o = s.findLast((f) => isOurs(f.url));
      add(ours, o ? name(o) : '(no frame of ours: Node, V8)', n.selfSize);
      const p = s.findLast((f) => f.url.includes('node_modules/'));
      add(pkg, p ? p.url.replace(/.*node_modules\//, '').split('/')[0]! : '(none)', n.selfSize);
    }
    for (const c of n.children) walk(c, s);
  };
  walk(head, []);
  console.log(`${(total / 1048576).toFixed(1)} MB sampled, ${(total / per).toFixed(0)} bytes per command (${per})`);
  for (const [title, m] of [['by function', self], ['by the nearest frame of ours', ours], ['by npm package (innermost)', pkg]] as const) {
    console.log(`\n${title}`);
    for (const [k, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, Number(top))) console.log(`${(v / per).toFixed(0).padStart(8)} B/cmd ${((100 * v) / total).toFixed(1).padStart(5)} %  ${k}`);
  }
}
