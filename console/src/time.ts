/** A clock signal that ticks every second (ages and countdowns re-render from it), and formatting. */
import { signal } from '@preact/signals';

export const now = signal(Date.now());
setInterval(() => (now.value = Date.now()), 1000);

/** "4 s", "3 min 2 s", "2 h 5 min", "3 d". */
export function duration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d`;
}

export function ago(iso: string | null | undefined, at = now.value): string {
  if (!iso) return 'never';
  return `${duration((at - Date.parse(iso)) / 1000)} ago`;
}

export function until(iso: string, at = now.value): string {
  const s = (Date.parse(iso) - at) / 1000;
  return s <= 0 ? 'expired' : duration(s);
}
