/**
 * The agents' masker (common/agent/masker.ts): the cost of registering values and of masking a log
 * line. Standalone: `bash scripts/with-node.sh node bench/masker.ts`. Prints milliseconds.
 */
import { Masker } from '../common/agent/masker.ts';

const PEM = ['-----BEGIN PRIVATE KEY-----', ...Array.from({ length: 26 }, (_, i) => 'ABCDEFGHabcdefgh0123456789+/'.repeat(3).slice(i, i + 64)), '-----END PRIVATE KEY-----'].join('\n');
const ms = (from: bigint) => Number(process.hrtime.bigint() - from) / 1e6;

const m = new Masker();
let t = process.hrtime.bigint();
for (const v of ['CanarySingle-7f3a9e21d4', PEM, 'Qz7', 'db-password-xyz', 'k'.repeat(64 * 1024)]) m.add(v);
console.log(`register 5 values (a 1.7 KB PEM, a 64 KiB value): ${ms(t).toFixed(1)} ms`);

const line = 'helm upgrade: an ordinary output line of about one hundred characters, holding no secret at all, ok';
const N = 100_000;
t = process.hrtime.bigint();
for (let i = 0; i < N; i++) m.apply(line);
const a = ms(t);
console.log(`mask ${N} lines of ${line.length} chars: ${a.toFixed(0)} ms (${((a * 1000) / N).toFixed(1)} µs per line)`);
m.release('k'.repeat(64 * 1024));
t = process.hrtime.bigint();
for (let i = 0; i < N; i++) m.apply(line);
const b = ms(t);
console.log(`the same without the 64 KiB value: ${b.toFixed(0)} ms (${((b * 1000) / N).toFixed(1)} µs per line)`);
