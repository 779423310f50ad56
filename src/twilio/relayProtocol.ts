/**
 * Twilio ConversationRelay WebSocket messages (key `type`). Inbound frames are validated with a
 * schema; anything else is an invalid frame, never an exception that reaches the process.
 */
import { z } from 'zod';

const setup = z.looseObject({
  type: z.literal('setup'),
  sessionId: z.string().optional(),
  callSid: z.string().min(1).max(64),
  accountSid: z.string().optional(),
  from: z.string().optional(),
  to: z.string().optional(),
  direction: z.string().optional(),
  customParameters: z.record(z.string(), z.string()).optional(),
});
const prompt = z.looseObject({
  type: z.literal('prompt'),
  voicePrompt: z.string().max(10_000),
  lang: z.string().optional(),
  // Defaults to a final transcript; partial prompts carry last: false.
  last: z.boolean().optional(),
});
const interrupt = z.looseObject({
  type: z.literal('interrupt'),
  utteranceUntilInterrupt: z.string().optional(),
  // A number in the reference, a string in one rendering of the live page: accept both.
  durationUntilInterruptMs: z.union([z.number(), z.string()]).optional(),
});
const dtmf = z.looseObject({ type: z.literal('dtmf'), digit: z.string().regex(/^[0-9*#A-D]$/) });
const error = z.looseObject({ type: z.literal('error'), description: z.string().optional() });

export const relayInbound = z.discriminatedUnion('type', [setup, prompt, interrupt, dtmf, error]);
export type RelayInbound = z.infer<typeof relayInbound>;

export type RelayParse = { ok: true; message: RelayInbound } | { ok: false; reason: string };

export const MAX_RELAY_FRAME_BYTES = 64 * 1024;

/** Parses one text frame; the reason never quotes the frame (it may carry caller data). */
export function parseRelayFrame(data: string): RelayParse {
  let json: unknown;
  try {
    json = JSON.parse(data);
  } catch {
    return { ok: false, reason: 'not JSON' };
  }
  const parsed = relayInbound.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return { ok: false, reason: `${issue?.path.join('.') || 'type'}: ${issue?.message ?? 'invalid'}` };
  }
  return { ok: true, message: parsed.data };
}

export type RelayOutbound =
  | { type: 'text'; token: string; last: boolean; interruptible?: boolean; preemptible?: boolean }
  | { type: 'end'; handoffData?: string }
  | { type: 'sendDigits'; digits: string };

/** Switchboard's own trace frame, sent only to clients that asked for it (never to Twilio). */
export const TRACE_HEADER = 'x-switchboard-trace';
