/** Shared pieces: the page frame with its navigation, status badges, a focus-trapping dialog, copy button, errors. */
import type { ComponentChildren } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { useLocation } from 'preact-iso';
import { signOut } from './api.ts';

const NAV: [string, string][] = [
  ['/', 'Overview'],
  ['/agents', 'Nodes & agents'],
  ['/add', 'Add a server or cluster'],
  ['/jobs', 'Jobs'],
  ['/submit', 'Submit'],
  ['/instances', 'Instances'],
];

let navigated = false;

export function Layout(props: { title: string; children: ComponentChildren }) {
  const { path, route } = useLocation();
  const [open, setOpen] = useState(false);
  const mainRef = useRef<HTMLElement>(null);
  useEffect(() => {
    document.title = `${props.title} · Tether`;
  }, [props.title]);
  // After a client-side navigation (not the first page), the focus goes to the new page's content,
  // as a full page load would put it at the top, so keyboard and screen-reader users start there.
  useEffect(() => {
    if (navigated) mainRef.current?.focus({ preventScroll: false });
    navigated = true;
  }, [path]);
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <a class="brand" href="/">
          Tether
        </a>
        <button type="button" class="menu" aria-expanded={open} aria-controls="nav" onClick={() => setOpen(!open)}>
          Menu
        </button>
        <nav id="nav" aria-label="Main" class={open ? 'open' : ''}>
          <ul>
            {NAV.map(([href, label]) => (
              <li key={href}>
                <a href={href} aria-current={(href === '/' ? path === '/' : path.startsWith(href)) ? 'page' : undefined} onClick={() => setOpen(false)}>
                  {label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <button
          type="button"
          class="secondary signout"
          onClick={async () => {
            await signOut();
            route('/signin');
          }}
        >
          Sign out
        </button>
      </header>
      <main id="main" tabIndex={-1} ref={mainRef}>
        <h1>{props.title}</h1>
        {props.children}
      </main>
    </>
  );
}

export function Status(props: { value: string }) {
  return <span class={`badge s-${props.value}`}>{props.value.replace('_', ' ')}</span>;
}

export function ErrorBox(props: { error: string | null | undefined }) {
  if (!props.error) return null;
  return (
    <p class="error" role="alert">
      {props.error}
    </p>
  );
}

export function CopyButton(props: { text: string; label?: string }) {
  const [done, setDone] = useState(false);
  return (
    <button
      type="button"
      class="secondary"
      onClick={async () => {
        try {
          await navigator.clipboard.writeText(props.text);
          setDone(true);
          setTimeout(() => setDone(false), 2000);
        } catch {
          setDone(false);
        }
      }}
    >
      {done ? 'Copied' : (props.label ?? 'Copy')}
    </button>
  );
}

const FOCUSABLE = 'a[href], button:not([disabled]), input:not([disabled]), select, textarea, [tabindex]:not([tabindex="-1"])';

/** A modal dialog (the native <dialog>, which traps focus and closes on Escape) asking to confirm. */
export function Confirm(props: { open: boolean; title: string; children: ComponentChildren; confirm: string; onConfirm: () => void; onClose: () => void }) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    if (props.open && !d.open) {
      d.showModal();
      (d.querySelector(FOCUSABLE) as HTMLElement | null)?.focus();
    } else if (!props.open && d.open) d.close();
  }, [props.open]);
  const onKey = (e: KeyboardEvent) => {
    if (e.key !== 'Tab' || !ref.current) return;
    const items = [...ref.current.querySelectorAll<HTMLElement>(FOCUSABLE)];
    const first = items[0];
    const last = items[items.length - 1];
    if (!first || !last) return;
    if (e.shiftKey && document.activeElement === first) {
      last.focus();
      e.preventDefault();
    } else if (!e.shiftKey && document.activeElement === last) {
      first.focus();
      e.preventDefault();
    }
  };
  return (
    <dialog ref={ref} aria-labelledby="dialog-title" onClose={props.onClose} onKeyDown={onKey}>
      <h2 id="dialog-title">{props.title}</h2>
      {props.children}
      <div class="actions">
        <button type="button" class="secondary" onClick={props.onClose}>
          Keep
        </button>
        <button type="button" class="danger" onClick={props.onConfirm}>
          {props.confirm}
        </button>
      </div>
    </dialog>
  );
}

/** Polls `load` every `ms` while the page is shown (and once at once); returns the last value and error. */
export function usePoll<T>(load: (signal: AbortSignal) => Promise<T>, ms: number, deps: unknown[] = []): { data: T | undefined; error: string | null; reload: () => void } {
  // Data is kept with the deps it was loaded for: after a filter or page change the old list is not
  // shown under the new query (it reads as undefined, "Loading…", until the new answer arrives).
  const key = JSON.stringify(deps);
  const [loaded, setLoaded] = useState<{ key: string; data: T } | undefined>(undefined);
  const [error, setError] = useState<string | null>(null);
  const [n, setN] = useState(0);
  useEffect(() => {
    const ctl = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const tick = async () => {
      try {
        const data = await load(ctl.signal);
        if (ctl.signal.aborted) return; // answered for deps that are gone
        setLoaded({ key, data });
        setError(null);
      } catch (e) {
        if (!ctl.signal.aborted) setError(e instanceof Error ? e.message : String(e));
      }
      if (!ctl.signal.aborted) timer = setTimeout(tick, ms);
    };
    void tick();
    return () => {
      ctl.abort();
      clearTimeout(timer);
    };
  }, [key, n]);
  return { data: loaded?.key === key ? loaded.data : undefined, error, reload: () => setN((x) => x + 1) };
}

export function KeyValues(props: { values: Record<string, unknown> | null | undefined; empty?: string; link?: boolean }) {
  const entries = Object.entries(props.values ?? {});
  if (!entries.length) return <p class="muted">{props.empty ?? 'none'}</p>;
  return (
    <dl class="kv">
      {entries.map(([k, v]) => (
        <div key={k}>
          <dt>{k}</dt>
          <dd>{props.link && typeof v === 'string' && /^https?:\/\//.test(v) ? <a href={v}>{v}</a> : <code>{typeof v === 'string' ? v : JSON.stringify(v)}</code>}</dd>
        </div>
      ))}
    </dl>
  );
}
