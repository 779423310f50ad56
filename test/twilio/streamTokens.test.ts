import { describe, expect, test } from 'vitest';
import { createStreamTokens } from '../../src/twilio/streamTokens.ts';

describe('stream tokens', () => {
  test('a token is good once, and carries what it was minted for', () => {
    const tokens = createStreamTokens();
    const t = tokens.mint({ transport: 'relay', companyId: 'acme', callSid: 'CA1' });
    expect(tokens.consume(t)).toMatchObject({ companyId: 'acme', callSid: 'CA1' });
    expect(tokens.consume(t)).toBeNull();
  });

  test('an expired token is refused', () => {
    let clock = 1_000_000;
    const tokens = createStreamTokens({ ttlMs: 30_000, now: () => clock });
    const t = tokens.mint({ transport: 'relay', companyId: 'acme', callSid: null });
    clock += 30_001;
    expect(tokens.consume(t)).toBeNull();
  });

  test('a forged or altered token is refused', () => {
    const tokens = createStreamTokens();
    const t = tokens.mint({ transport: 'relay', companyId: 'acme', callSid: 'CA1' });
    const [body, mac] = t.split('.');
    const altered = Buffer.from(
      Buffer.from(body!, 'base64url').toString('utf8').replace('acme', 'evil'),
    ).toString('base64url');
    for (const bad of [`${altered}.${mac}`, `${body}.AAAA`, 'nonsense', '', '.', 'a'.repeat(5000)]) {
      expect(tokens.consume(bad)).toBeNull();
    }
  });

  test('instances sharing a secret accept each other’s tokens; others do not', () => {
    const a = createStreamTokens({ secret: 'shared-secret' });
    const b = createStreamTokens({ secret: 'shared-secret' });
    const c = createStreamTokens({ secret: 'another-secret' });
    expect(b.consume(a.mint({ transport: 'relay', companyId: 'acme', callSid: null }))).not.toBeNull();
    expect(c.consume(a.mint({ transport: 'relay', companyId: 'acme', callSid: null }))).toBeNull();
  });
});
