import { randomUUID } from 'node:crypto';
import { PRICE_TABLE_VERSION } from './priceTable.ts';

/**
 * A cost event: one paid request (or a marker in a paid request's life). Money is carried by the
 * terminal actions (completed, cancelled, failed), so summing costUsd over events gives the spend.
 */

export type CostAction = 'triggered' | 'used' | 'cancelled' | 'failed' | 'completed';

/**
 * What paid: tier 3 answers, warmups, LLM-backed capture/detect, embeddings, and on Media Streams
 * calls speech to text (audio heard) and text to speech (audio said).
 */
export type CostPurpose = 'tier3' | 'warmup' | 'capture' | 'detect' | 'embedding' | 'stt' | 'tts';

export interface CostEvent {
  /** Client-generated (UUID), so writing the same event twice can store it once. */
  readonly id: string;
  readonly at: string;
  readonly companyId: string;
  /** The engine's id for the call (Twilio's CallSid may not be known yet). */
  readonly callId: string | null;
  readonly callSid: string | null;
  readonly turn: number | null;
  readonly purpose: CostPurpose;
  readonly tier: 2 | 3 | null;
  readonly action: CostAction;
  readonly provider: string;
  readonly model: string;
  readonly inputTokens: number;
  readonly outputTokens: number;
  readonly durationMs: number;
  /** Null when the model is not in the price table: unknown, never 0. */
  readonly costUsd: number | null;
  /** True when tokens/cost are an estimate (e.g. a request cancelled mid-stream). */
  readonly estimated: boolean;
  readonly priceVersion: string;
  /** Time the caller saved thanks to a used warmup. */
  readonly timeSavedMs: number | null;
  /** Audio billed by an STT or TTS event, in milliseconds; null for text models. */
  readonly audioMs: number | null;
}

export interface CostSink {
  record(event: CostEvent): void;
}

const UUID_LENGTH = 36;
const UUID_SCRATCH = Buffer.allocUnsafe(UUID_LENGTH);

/**
 * A random (v4) UUID as one flat string. `randomUUID()` builds its string by concatenation, so each
 * id stays on the heap as a tree of about fifteen string pieces (some 490 bytes); the ledgers keep
 * the last 10,000 events to drop duplicates, which made ids more than half of what a kept event
 * weighs. Copied through a scratch buffer it is one 64-byte string.
 */
export function flatRandomUuid(): string {
  UUID_SCRATCH.write(randomUUID(), 'latin1');
  return UUID_SCRATCH.toString('latin1', 0, UUID_LENGTH);
}

/** A cost event with an id, a time, the current price-table version and zeros for what is not given. */
export function newCostEvent(
  fields: Pick<CostEvent, 'companyId' | 'purpose' | 'action' | 'provider' | 'model'> & Partial<CostEvent>,
): CostEvent {
  return {
    id: flatRandomUuid(),
    at: new Date().toISOString(),
    callId: null,
    callSid: null,
    turn: null,
    tier: null,
    inputTokens: 0,
    outputTokens: 0,
    durationMs: 0,
    costUsd: 0,
    estimated: false,
    priceVersion: PRICE_TABLE_VERSION,
    timeSavedMs: null,
    audioMs: null,
    ...fields,
  };
}
