/**
 * List prices of the models Switchboard calls, in USD per million tokens. The table is versioned:
 * every cost event records PRICE_TABLE_VERSION, so old spend can be recomputed or explained after
 * prices change. Update the version whenever a price changes.
 */

export const PRICE_TABLE_VERSION = '2026-11-01';

export interface ModelPrice {
  readonly inputUsdPerMillion: number;
  readonly outputUsdPerMillion: number;
}

const PRICES: Readonly<Record<string, Readonly<Record<string, ModelPrice>>>> = {
  openai: {
    'gpt-4o-mini': { inputUsdPerMillion: 0.15, outputUsdPerMillion: 0.6 },
    'gpt-4o': { inputUsdPerMillion: 2.5, outputUsdPerMillion: 10 },
    'gpt-4.1-mini': { inputUsdPerMillion: 0.4, outputUsdPerMillion: 1.6 },
    'gpt-4.1-nano': { inputUsdPerMillion: 0.1, outputUsdPerMillion: 0.4 },
    'text-embedding-3-small': { inputUsdPerMillion: 0.02, outputUsdPerMillion: 0 },
    'text-embedding-3-large': { inputUsdPerMillion: 0.13, outputUsdPerMillion: 0 },
  },
  anthropic: {
    'claude-haiku-4-5': { inputUsdPerMillion: 1, outputUsdPerMillion: 5 },
    'claude-sonnet-4-5': { inputUsdPerMillion: 3, outputUsdPerMillion: 15 },
    'claude-3-5-haiku': { inputUsdPerMillion: 0.8, outputUsdPerMillion: 4 },
  },
};

// What may follow a known model name: a snapshot date (2024-07-18 or 20251001) or "latest".
// Anything else ("gpt-4o-audio-preview", "gpt-4o-mini-tts") is a different model with its own price.
const SNAPSHOT_SUFFIX = /^-(\d{4}-\d{2}-\d{2}|\d{8}|latest)$/;

/**
 * The price of `model` from `provider`, or null when unknown. Snapshot names resolve to their
 * family by the longest known prefix: "gpt-4o-mini-2024-07-18" is gpt-4o-mini, not gpt-4o.
 */
export function priceOf(provider: string, model: string): ModelPrice | null {
  const models = PRICES[provider];
  if (models === undefined) return null;
  const exact = models[model];
  if (exact !== undefined) return exact;
  let best: string | null = null;
  for (const known of Object.keys(models)) {
    if (
      model.startsWith(known) &&
      SNAPSHOT_SUFFIX.test(model.slice(known.length)) &&
      (best === null || known.length > best.length)
    ) {
      best = known;
    }
  }
  return best === null ? null : (models[best] ?? null);
}

/** The list cost of a request in USD, or null when the model is not in the table: unknown, never 0. */
export function costUsd(
  provider: string,
  model: string,
  usage: { readonly inputTokens: number; readonly outputTokens: number },
): number | null {
  const price = priceOf(provider, model);
  if (price === null) return null;
  return (
    (usage.inputTokens * price.inputUsdPerMillion + usage.outputTokens * price.outputUsdPerMillion) / 1e6
  );
}

/**
 * A rough token count for when the provider reported none (e.g. a cancelled stream): about four
 * characters per token (OpenAI's rule of thumb for English), rounded up: at least 1 for non-empty text, 0
 * for the empty string. Good for cost estimates, not for fitting a context window.
 */
export function estimateTokens(text: string): number {
  return Math.ceil(text.length / 4);
}
