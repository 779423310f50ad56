/**
 * List prices of OpenAI text-to-speech models. Kept here rather than in src/cost/priceTable.ts,
 * whose table is per million tokens: tts-1 is billed per character, and gpt-4o-mini-tts by text and
 * audio tokens that a raw PCM stream does not report, so it is estimated per minute of audio.
 *
 * Source: OpenAI's pricing page as published in 2025 (tts-1 $15 and tts-1-hd $30 per million
 * characters; gpt-4o-mini-tts "estimated cost" $0.015 per minute), repeated by third parties in 2026.
 * Not re-checked against openai.com for 2026-11: verify before billing anyone.
 */

export const TTS_PRICE_VERSION = '2026-11-01-unverified';

type TtsPrice = { readonly usdPerMillionChars: number } | { readonly usdPerAudioMinute: number };

const PRICES: Readonly<Record<string, TtsPrice>> = {
  'tts-1': { usdPerMillionChars: 15 },
  'tts-1-hd': { usdPerMillionChars: 30 },
  'gpt-4o-mini-tts': { usdPerAudioMinute: 0.015 },
};

const SNAPSHOT_SUFFIX = /-\d{4}-\d{2}-\d{2}$/;

/**
 * The list cost of one synthesis, or null when the model's price is unknown: unknown, never 0.
 * `estimated` is true for per-minute prices (an average, not the bill).
 */
export function ttsCostUsd(
  model: string,
  usage: { readonly characters: number; readonly audioSeconds: number },
): { readonly costUsd: number; readonly estimated: boolean } | null {
  const price = PRICES[model] ?? PRICES[model.replace(SNAPSHOT_SUFFIX, '')];
  if (price === undefined) return null;
  if ('usdPerMillionChars' in price) {
    return { costUsd: (usage.characters * price.usdPerMillionChars) / 1e6, estimated: false };
  }
  return { costUsd: (usage.audioSeconds / 60) * price.usdPerAudioMinute, estimated: true };
}
