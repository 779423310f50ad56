/**
 * Who may use the admin surfaces (the admin API under /api, /status, the inspector): a request with
 * `Authorization: Bearer <ADMIN_TOKEN>`, or, for the inspector only, a browser that signed in once
 * with the token and holds the session cookie. The cookie carries an expiry and
 * an HMAC of it keyed by the token, never the token, so it cannot be turned back into the token and
 * rotating the token signs every browser out. Every comparison is constant-time over equal-length
 * digests.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

export const SESSION_COOKIE = 'switchboard_inspect';
/** How long a browser stays signed in. */
export const SESSION_MS = 12 * 60 * 60 * 1000;
const COOKIE_PATH = '/inspect';

export interface AdminAuth {
  /** True for a valid bearer token or session cookie. */
  allows(req: IncomingMessage): boolean;
  /** True for a valid bearer token only (the admin API: no cookie, so no cross-site request can use it). */
  allowsBearer(req: IncomingMessage): boolean;
  /** Checks a token typed into the sign-in form. */
  matches(token: string): boolean;
  /** A `Set-Cookie` value that signs the browser in. */
  sessionCookie(secure: boolean): string;
  /** A `Set-Cookie` value that signs the browser out. */
  clearCookie(secure: boolean): string;
}

const digest = (value: string | Buffer): Buffer => createHash('sha256').update(value).digest();

/** Constant-time string equality: both sides are hashed to equal-length digests first. */
export function sameSecret(given: string, expected: string): boolean {
  return timingSafeEqual(digest(given), digest(expected));
}

function cookieValue(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

export function createAdminAuth(token: string, now: () => number = Date.now): AdminAuth {
  const mac = (expires: string) =>
    createHmac('sha256', token).update(`switchboard-inspector-session:${expires}`).digest('base64url');

  const validCookie = (value: string | undefined): boolean => {
    if (value === undefined) return false;
    const match = /^(\d{1,13})\.([A-Za-z0-9_-]{43})$/.exec(value);
    if (match === null) return false;
    const expires = match[1]!;
    return sameSecret(match[2]!, mac(expires)) && Number(expires) * 1000 > now();
  };

  const attributes = (secure: boolean) =>
    `Path=${COOKIE_PATH}; HttpOnly; SameSite=Strict${secure ? '; Secure' : ''}`;

  const validBearer = (req: IncomingMessage): boolean => {
    const header = req.headers.authorization;
    if (typeof header !== 'string') return false;
    const bearer = /^Bearer\s+(\S+)\s*$/i.exec(header)?.[1];
    return bearer !== undefined && sameSecret(bearer, token);
  };

  return {
    allows: (req) => validBearer(req) || validCookie(cookieValue(req.headers.cookie, SESSION_COOKIE)),
    allowsBearer: validBearer,
    matches: (given) => sameSecret(given, token),
    sessionCookie(secure) {
      const expires = String(Math.floor((now() + SESSION_MS) / 1000));
      return `${SESSION_COOKIE}=${expires}.${mac(expires)}; Max-Age=${SESSION_MS / 1000}; ${attributes(secure)}`;
    },
    clearCookie: (secure) => `${SESSION_COOKIE}=; Max-Age=0; ${attributes(secure)}`,
  };
}
