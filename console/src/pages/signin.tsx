/** Sign-in: the API token is traded for a session cookie (POST /v1/sessions) and forgotten. */
import { useState } from 'preact/hooks';
import { useLocation } from 'preact-iso';
import { errorText, signIn } from '../api.ts';
import { ErrorBox } from '../components.tsx';

export default function SignIn() {
  const { route, query } = useLocation();
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  return (
    <main id="main" class="signin">
      <h1>Sign in to Tether</h1>
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          const form = e.currentTarget;
          const input = form.elements.namedItem('token') as HTMLInputElement;
          setBusy(true);
          setError(null);
          try {
            await signIn(input.value.trim());
            input.value = '';
            const next = query.next && query.next.startsWith('/') && !query.next.startsWith('//') ? query.next : '/';
            route(next, true);
          } catch (err) {
            setError(errorText(err));
          } finally {
            setBusy(false);
          }
        }}
      >
        <label for="token">API token</label>
        <input id="token" name="token" type="password" autoComplete="off" required spellcheck={false} />
        <p class="hint">
          The admin token is in <code>data/admin-token</code> on the control plane; <code>POST /v1/api-tokens</code> makes more. It is exchanged for a session and not kept by the browser.
        </p>
        <ErrorBox error={error} />
        <button type="submit" disabled={busy}>
          Sign in
        </button>
      </form>
    </main>
  );
}
