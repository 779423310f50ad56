/**
 * One-time, short-lived tokens that tie a WebSocket to the webhook that minted it. The token is
 * self-verifying (HMAC), so any instance sharing the secret can check it; single use is enforced by
 * remembering spent nonces until they expire.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export interface StreamGrant {
  /** The socket the token opens: a ConversationRelay or a Media Streams one. */
  readonly transport: 'relay' | 'media';
  readonly companyId: string;
  /** CallSid from the signed webhook; the stream's setup/start must carry the same one. */
  readonly callSid: string | null;
  readonly expiresAt: number;
}

export interface StreamTokens {
  mint(grant: Omit<StreamGrant, 'expiresAt'>): string;
  /** Verifies and spends a token: null when unknown, forged, expired or already used. */
  consume(token: string): StreamGrant | null;
}

export function createStreamTokens(
  options: { secret?: string; ttlMs?: number; now?: () => number } = {},
): StreamTokens {
  const key = options.secret
    ? createHmac('sha256', 'switchboard-stream-token').update(options.secret).digest()
    : randomBytes(32);
  const ttlMs = options.ttlMs ?? 30_000;
  const now = options.now ?? Date.now;
  const spent = new Map<string, number>();
  const sign = (body: string) => createHmac('sha256', key).update(body).digest('base64url');

  let consumed = 0;
  // Expired nonces can never be replayed (the token's own expiry refuses them), so forgetting them
  // is only about memory: sweep now and then, not on every call.
  const sweep = () => {
    if (++consumed % 256 !== 0) return;
    const t = now();
    for (const [nonce, exp] of spent) if (exp < t) spent.delete(nonce);
  };

  return {
    mint(grant) {
      const body = Buffer.from(
        JSON.stringify({
          t: grant.transport,
          c: grant.companyId,
          s: grant.callSid,
          e: now() + ttlMs,
          n: randomBytes(12).toString('base64url'),
        }),
      ).toString('base64url');
      return `${body}.${sign(body)}`;
    },
    consume(token) {
      if (token.length > 1024) return null;
      const [body, mac] = token.split('.');
      if (!body || !mac) return null;
      const expected = Buffer.from(sign(body));
      const given = Buffer.from(mac);
      if (expected.length !== given.length || !timingSafeEqual(expected, given)) return null;
      let payload: { t?: unknown; c?: unknown; s?: unknown; e?: unknown; n?: unknown };
      try {
        payload = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as typeof payload;
      } catch {
        return null;
      }
      if (
        (payload.t !== 'relay' && payload.t !== 'media') ||
        typeof payload.c !== 'string' ||
        typeof payload.e !== 'number' ||
        typeof payload.n !== 'string'
      )
        return null;
      if (payload.e < now() || spent.has(payload.n)) return null;
      sweep();
      spent.set(payload.n, payload.e);
      return {
        transport: payload.t,
        companyId: payload.c,
        callSid: typeof payload.s === 'string' ? payload.s : null,
        expiresAt: payload.e,
      };
    },
  };
}
