/**
 * What Media Streams calls need beyond the engine: the STT provider, speech output (TTS + the
 * pre-synthesized audio cache), Twilio call control and the handoff notes read by the `<Connect
 * action>` webhook. Built once per process from the environment; absent when STT/TTS are not
 * configured (calls then go over ConversationRelay).
 */
import type { Redis } from 'ioredis';
import type { RedisHealth } from '../store/resilientRedis.ts';
import type { CompanyRuntime } from '../calls/engine.ts';
import type { EnvConfig } from '../config/env.ts';
import type { CostSink } from '../cost/costEvent.ts';
import type { Logger } from '../observability/logger.ts';
import { createHttpTranscriptionStt, localSegmentingVad } from '../providers/stt/httpTranscriptionStt.ts';
import { createOpenAiRealtimeStt } from '../providers/stt/openaiRealtimeStt.ts';
import type { SttProvider } from '../providers/stt/sttSession.ts';
import { createOpenAiTts } from '../providers/tts/openaiTts.ts';
import { fallbackText } from '../routing/fallbackPicker.ts';
import type { CallControl, HandoffStore } from '../twilio/callControl.ts';
import { createTwilioCallControl } from '../twilio/callControl.ts';
import { createMemoryHandoffs, createRedisHandoffs } from '../twilio/handoffs.ts';
import { createSpeechOut } from './speechOut.ts';
import type { SpeechOut } from './types.ts';

export interface MediaServices {
  readonly stt: SttProvider;
  readonly speech: SpeechOut;
  /** Twilio's REST API, when TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are set. */
  readonly callControl: CallControl | null;
  readonly handoffs: HandoffStore;
}

export function createMediaServices(
  env: EnvConfig,
  deps: {
    readonly ledger: CostSink;
    readonly log: Logger;
    readonly redis: Redis | null;
    readonly keyPrefix: string;
    readonly health: RedisHealth | null;
  },
): MediaServices | undefined {
  const speech = env.speech;
  if (speech === undefined) return undefined;
  const { stt: s, tts: t } = speech;
  const common = {
    apiKey: s.apiKey,
    ...(s.baseURL === undefined ? {} : { baseURL: s.baseURL }),
    ...(s.model === undefined ? {} : { model: s.model }),
    ...(s.language === undefined ? {} : { language: s.language }),
  };
  const stt =
    s.provider === 'openai-realtime'
      ? createOpenAiRealtimeStt(common)
      : createHttpTranscriptionStt({ ...common, createVad: () => localSegmentingVad() });
  const tts = createOpenAiTts({
    apiKey: t.apiKey,
    ...(t.baseURL === undefined ? {} : { baseURL: t.baseURL }),
    ...(t.model === undefined ? {} : { model: t.model }),
  });
  const { accountSid, authToken } = env.twilio;
  return {
    stt,
    speech: createSpeechOut({
      tts,
      ledger: deps.ledger,
      log: deps.log,
      maxCacheBytes: speech.audioCacheBytes,
    }),
    callControl:
      accountSid !== undefined && authToken !== undefined
        ? createTwilioCallControl({
            accountSid,
            authToken,
            log: deps.log,
            ...(env.twilioApiBaseUrl === undefined ? {} : { apiBaseUrl: env.twilioApiBaseUrl }),
          })
        : null,
    handoffs:
      deps.redis === null
        ? createMemoryHandoffs()
        : createRedisHandoffs(deps.redis, {
            keyPrefix: deps.keyPrefix,
            ...(deps.health === null ? {} : { health: deps.health }),
          }),
  };
}

/**
 * Every fixed line a company's calls can say, as the call machine will say it: greeting, reprompt,
 * closing, emergency and transfer lines, each fallback line (with the escalation offer the
 * fallback picker adds), and every Tier 1/2 scenario reply (tiers answer with a scenario's first reply). Their audio is synthesized ahead of calls.
 */
export function cannedLines(runtime: CompanyRuntime): string[] {
  const { config: company, policy, templates } = runtime;
  const f = company.fallbackResponses;
  const lines = new Set<string>([
    policy.greeting,
    policy.repromptLine,
    policy.closingLine,
    policy.emergencyLine,
    policy.transferLine,
  ]);
  for (const kind of ['clarificationNeeded', 'noMatchFound', 'technicalIssue', 'outOfScope'] as const) {
    for (const line of f[kind]) {
      lines.add(fallbackText(company, kind, line, false));
      lines.add(fallbackText(company, kind, line, true));
    }
  }
  for (const template of templates)
    for (const category of template.categories)
      for (const scenario of category.scenarios) {
        const reply = scenario.replies[0];
        if (reply !== undefined) lines.add(reply);
      }
  return [...lines].filter((l) => l.trim() !== '');
}
