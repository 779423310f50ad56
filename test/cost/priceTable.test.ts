import { describe, expect, it } from 'vitest';
import { PRICE_TABLE_VERSION, costUsd, estimateTokens, priceOf } from '../../src/cost/priceTable.ts';

describe('priceTable', () => {
  it('is versioned', () => {
    expect(PRICE_TABLE_VERSION).toBe('2026-11-01');
  });

  it.each([
    ['openai', 'gpt-4o-mini', 0.15, 0.6],
    ['openai', 'gpt-4o', 2.5, 10],
    ['openai', 'gpt-4.1-mini', 0.4, 1.6],
    ['openai', 'gpt-4.1-nano', 0.1, 0.4],
    ['openai', 'text-embedding-3-small', 0.02, 0],
    ['openai', 'text-embedding-3-large', 0.13, 0],
    ['anthropic', 'claude-haiku-4-5', 1, 5],
    ['anthropic', 'claude-sonnet-4-5', 3, 15],
    ['anthropic', 'claude-3-5-haiku', 0.8, 4],
  ])('%s %s costs %f / %f USD per million tokens', (provider, model, input, output) => {
    expect(priceOf(provider, model)).toEqual({ inputUsdPerMillion: input, outputUsdPerMillion: output });
  });

  it.each([
    ['openai', 'gpt-4o-mini-2024-07-18', 'gpt-4o-mini'],
    ['openai', 'gpt-4o-2024-08-06', 'gpt-4o'],
    ['openai', 'gpt-4.1-nano-2025-04-14', 'gpt-4.1-nano'],
    ['anthropic', 'claude-haiku-4-5-20251001', 'claude-haiku-4-5'],
    ['anthropic', 'claude-3-5-haiku-20241022', 'claude-3-5-haiku'],
    ['anthropic', 'claude-3-5-haiku-latest', 'claude-3-5-haiku'],
  ])('%s %s is priced as %s (longest known prefix)', (provider, model, family) => {
    expect(priceOf(provider, model)).toEqual(priceOf(provider, family));
  });

  it.each([
    ['openai', 'gpt-5'],
    ['openai', 'gpt-4o-audio-preview'], // a different model, not a gpt-4o snapshot
    ['openai', 'gpt-4o-mini-tts'],
    ['openai', 'claude-haiku-4-5'], // wrong provider
    ['anthropic', 'claude-opus-4-1'],
    ['local', 'hash-ngram-v1'],
  ])('%s %s is unknown', (provider, model) => {
    expect(priceOf(provider, model)).toBeNull();
  });

  describe('costUsd', () => {
    it('charges input and output at their own rates', () => {
      expect(costUsd('openai', 'gpt-4o-mini', { inputTokens: 1_000_000, outputTokens: 0 })).toBeCloseTo(
        0.15,
        10,
      );
      expect(costUsd('openai', 'gpt-4o-mini', { inputTokens: 0, outputTokens: 1_000_000 })).toBeCloseTo(
        0.6,
        10,
      );
      expect(
        costUsd('anthropic', 'claude-haiku-4-5-20251001', { inputTokens: 1200, outputTokens: 80 }),
      ).toBeCloseTo((1200 * 1 + 80 * 5) / 1e6, 12);
      expect(costUsd('openai', 'text-embedding-3-small', { inputTokens: 500, outputTokens: 0 })).toBeCloseTo(
        1e-5,
        12,
      );
    });

    it('is null, never 0, for an unknown model', () => {
      expect(costUsd('openai', 'gpt-99', { inputTokens: 1000, outputTokens: 1000 })).toBeNull();
      expect(costUsd('mystery', 'gpt-4o', { inputTokens: 1000, outputTokens: 1000 })).toBeNull();
    });

    it('is 0 for a known model and no tokens', () => {
      expect(costUsd('openai', 'gpt-4o', { inputTokens: 0, outputTokens: 0 })).toBe(0);
    });
  });

  describe('estimateTokens', () => {
    it.each([
      ['', 0],
      ['a', 1],
      ['abcd', 1],
      ['abcde', 2],
      ['x'.repeat(400), 100],
    ])('%j is about %i tokens (4 characters each, rounded up)', (text, tokens) => {
      expect(estimateTokens(text)).toBe(tokens);
    });
  });
});
