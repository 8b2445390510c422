import type { RequestHandler } from 'express';
import type { TLSSocket } from 'node:tls';
import { unauthorized } from '../../common/errors.ts';
import type { AccountsService } from '../accounts/accounts.service.ts';
import type { IdentityService } from '../identity/identity.service.ts';
import type { AgentPrincipal } from '../queue/queue.service.ts';

declare module 'express-serve-static-core' {
  interface Locals {
    aid?: string;
  }
}

/** Admin routes: `Authorization: Bearer tether_pat_…`, resolved to an account. */
export function requireAdmin(accounts: AccountsService): RequestHandler {
  return async (req, res, next) => {
    if (res.locals.aid) return next(); // already authenticated for this request (app.ts checks every /v1 route first)
    const h = req.headers.authorization;
    if (!h) throw unauthorized('missing Authorization: Bearer <API token>', 'missing_token');
    const m = /^Bearer\s+(\S+)$/i.exec(h);
    if (!m) throw unauthorized('malformed Authorization header: expected "Bearer <API token>"', 'invalid_token');
    res.locals.aid = (await accounts.authenticate(m[1]!)).aid;
    next();
  };
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
