/** The console's entry: the session check, then the router (preact-iso); pages other than the overview load on demand. */
import { render } from 'preact';
import { useEffect } from 'preact/hooks';
import { LocationProvider, Route, Router, lazy, useLocation } from 'preact-iso';
import { loadSession, prefetch, session } from './api.ts';
import Overview from './pages/overview.tsx';
import SignIn from './pages/signin.tsx';
import './styles.css';

const Agents = lazy(() => import('./pages/agents.tsx'));
const Add = lazy(() => import('./pages/add.tsx'));
const Jobs = lazy(() => import('./pages/jobs.tsx'));
const Job = lazy(() => import('./pages/job.tsx'));
const Submit = lazy(() => import('./pages/submit.tsx'));
const Instances = lazy(() => import('./pages/instances.tsx'));
const Instance = lazy(() => import('./pages/instance.tsx'));

function NotFound() {
  return (
    <main id="main">
      <h1>Not found</h1>
      <p>
        <a href="/">Back to the overview</a>
      </p>
    </main>
  );
}

function Routes() {
  const { path, url, route } = useLocation();
  const s = session.value;
  useEffect(() => {
    if (s === null && path !== '/signin') route(`/signin?next=${encodeURIComponent(url)}`, true);
  }, [s, path]);
  if (s === undefined) return <p aria-busy="true">Loading…</p>;
  if (s === null && path !== '/signin') return null;
  return (
    <Router>
      <Route path="/signin" component={SignIn} />
      <Route path="/" component={Overview} />
      <Route path="/agents" component={Agents} />
      <Route path="/add" component={Add} />
      <Route path="/jobs" component={Jobs} />
      <Route path="/jobs/:id" component={Job} />
      <Route path="/submit" component={Submit} />
      <Route path="/instances" component={Instances} />
      <Route path="/instances/:osid" component={Instance} />
      <Route default component={NotFound} />
    </Router>
  );
}

if (location.pathname === '/') prefetch('/v1/overview');
void loadSession();
render(
  <LocationProvider>
    <Routes />
  </LocationProvider>,
  document.getElementById('app')!,
);
