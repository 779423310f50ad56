/**
 * List prices of OpenAI speech-to-text models, per minute of input audio. Kept here rather than in
 * src/cost/priceTable.ts, whose table is per million tokens.
 *
 * Source: OpenAI's pricing page as published in 2025 (gpt-4o-*-transcribe are token-billed; these are
 * OpenAI's own "estimated cost" per minute), repeated by third-party guides in April 2026. Not
 * re-checked against openai.com for 2026-11: verify before billing anyone.
 */

export const STT_PRICE_VERSION = '2026-11-01-unverified';

const USD_PER_MINUTE: Readonly<Record<string, number>> = {
  'whisper-1': 0.006,
  'gpt-4o-transcribe': 0.006,
  'gpt-4o-mini-transcribe': 0.003,
};

// A dated snapshot ("gpt-4o-mini-transcribe-2025-12-15") is priced like its family.
const SNAPSHOT_SUFFIX = /-\d{4}-\d{2}-\d{2}$/;

/** USD per minute of audio for `model`, or null when unknown. */
export function sttUsdPerMinute(model: string): number | null {
  return USD_PER_MINUTE[model] ?? USD_PER_MINUTE[model.replace(SNAPSHOT_SUFFIX, '')] ?? null;
}

/** The list cost of `audioSeconds` of audio, or null when the model's price is unknown: unknown, never 0. */
export function sttCostUsd(model: string, audioSeconds: number): number | null {
  const perMinute = sttUsdPerMinute(model);
  return perMinute === null ? null : (audioSeconds / 60) * perMinute;
}
