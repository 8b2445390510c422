import type { RequestHandler, Request } from 'express';
import type { TLSSocket } from 'node:tls';
import { forbidden, unauthorized } from '../../common/errors.ts';
import type { AccountsService } from '../accounts/accounts.service.ts';
import type { IdentityService } from '../identity/identity.service.ts';
import type { AgentPrincipal } from '../queue/queue.service.ts';
import { SESSION_COOKIE, type Session, type SessionsService } from '../sessions/sessions.service.ts';

declare module 'express-serve-static-core' {
  interface Locals {
    aid?: string;
    /** Set when the request was authenticated by the console's session cookie (not a bearer token). */
    session?: Session;
  }
}

const SAFE_METHODS = new Set(['GET', 'HEAD']);

/**
 * Admin routes: `Authorization: Bearer tether_pat_…`, resolved to an account; or, with
 * `sessions`, the console's `tether_session` cookie (when no Authorization header is sent). With
 * the cookie, a request that is not GET/HEAD must carry the session's `X-CSRF-Token` and, when
 * it has an Origin, come from the server's own origin (403 `csrf_failed` / `cross_origin`).
 * Headers only: the body has not been read yet.
 */
export function requireAdmin(accounts: AccountsService, sessions?: SessionsService): RequestHandler {
  return async (req, res, next) => {
    if (res.locals.aid) return next(); // already authenticated for this request (app.ts checks every /v1 route first)
    const h = req.headers.authorization;
    if (!h && sessions) {
      const cookie = sessionCookie(req.headers.cookie);
      if (cookie !== undefined) {
        const write = !SAFE_METHODS.has(req.method);
        if (write && !sameOrigin(req)) throw forbidden('a request made with the session cookie must come from this server\'s own origin', 'cross_origin');
        const s = await sessions.authenticate(cookie);
        if (write && !sessions.csrfMatches(s, headerValue(req.headers['x-csrf-token']))) {
          throw forbidden('a write made with the session cookie needs the X-CSRF-Token header of the session (GET /v1/sessions/current)', 'csrf_failed');
        }
        res.locals.session = s;
        res.locals.aid = s.aid;
        return next();
      }
    }
    if (!h) throw unauthorized('missing Authorization: Bearer <API token>', 'missing_token');
    const m = /^Bearer\s+(\S+)$/i.exec(h);
    if (!m) throw unauthorized('malformed Authorization header: expected "Bearer <API token>"', 'invalid_token');
    res.locals.aid = (await accounts.authenticate(m[1]!)).aid;
    next();
  };
}

/** The value of the session cookie in a Cookie header (the first one of that name), if any. */
export function sessionCookie(header: string | undefined): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const p = part.trim();
    if (p.startsWith(`${SESSION_COOKIE}=`)) return p.slice(SESSION_COOKIE.length + 1);
  }
  return undefined;
}

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? undefined : v;
}

/** An Origin header, when present, must be this server as the client reached it (https://<Host>). */
function sameOrigin(req: Request): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  const host = req.headers.host;
  if (!host) return false;
  try {
    const o = new URL(origin);
    return o.protocol === 'https:' && o.host === new URL(`https://${host}`).host && origin === o.origin;
  } catch {
    return false; // "null" (a sandboxed or opaque origin) and anything that is not a URL
  }
}

/**
 * The verified peer of each TLS 1.3 connection (1.3 has no renegotiation: the peer certificate of
 * a connection never changes), so a kept-alive agent's certificate is parsed once, not per request.
 */
const verifiedPeers = new WeakMap<TLSSocket, { serial: string; cn: string | undefined }>();

export async function authenticateAgent(identity: IdentityService, socket: TLSSocket): Promise<AgentPrincipal> {
  let known = verifiedPeers.get(socket);
  if (!known) {
    // The X509Certificate form parses fields on demand (getPeerCertificate() builds every field,
    // which is most of a reconnecting agent's cost after a restart).
    const peer = typeof socket.getPeerX509Certificate === 'function' ? socket.getPeerX509Certificate() : undefined;
    if (!peer || !peer.serialNumber) throw unauthorized('this route needs a client certificate issued by this control plane', 'client_certificate_required');
    if (!socket.authorized) {
      const why = String(socket.authorizationError ?? 'not trusted');
      if (why === 'CERT_HAS_EXPIRED') throw unauthorized('the client certificate has expired', 'certificate_expired');
      throw unauthorized(`the client certificate was not issued by this control plane (${why})`, 'untrusted_certificate');
    }
    known = { serial: peer.serialNumber, cn: commonName(peer.subject) };
    if (socket.getProtocol() === 'TLSv1.3') verifiedPeers.set(socket, known);
  }
  // The serial is checked against the database (through the identity cache) on every request.
  return identity.authenticate(known.serial, known.cn);
}

/** The CN of an X509Certificate subject ("C=…\nO=…\nCN=…", one attribute per line). */
function commonName(subject: string): string | undefined {
  for (const line of subject.split('\n')) if (line.startsWith('CN=')) return line.slice(3);
  return undefined;
}
