/**
 * The only file that reads process.env. Everything is validated once, every problem is reported at
 * once by variable name, and the result is frozen and passed down.
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import { ConfigError } from '../errors.ts';

const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v.trim()));

const optionalUrl = (protocols: readonly string[]) =>
  optionalString.refine(
    (v) => {
      if (v === undefined) return true;
      try {
        return protocols.includes(new URL(v).protocol);
      } catch {
        return false;
      }
    },
    { message: `expected a URL (${protocols.join(' or ')})` },
  );

const envSchema = z.object({
  PORT: z.coerce.number().int().min(0).max(65_535).default(8080),
  HOST: z.string().default('0.0.0.0'),
  DATA_DIR: z.string().default('./data'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  DATABASE_URL: optionalUrl(['postgres:', 'postgresql:']),
  REDIS_URL: optionalUrl(['redis:', 'rediss:']),
  REDIS_KEY_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9:_-]{0,64}$/, 'expected up to 64 characters of A-Z, a-z, 0-9, ":", "_", "-"')
    .default(''),
  OPENAI_API_KEY: optionalString,
  OPENAI_BASE_URL: optionalUrl(['http:', 'https:']),
  ANTHROPIC_API_KEY: optionalString,
  ANTHROPIC_BASE_URL: optionalUrl(['http:', 'https:']),
  TWILIO_AUTH_TOKEN: optionalString,
  TWILIO_ACCOUNT_SID: optionalString.refine((v) => v === undefined || /^AC[0-9a-fA-F]{32}$/.test(v), {
    message: 'expected "AC" followed by 32 hex characters',
  }),
  PUBLIC_BASE_URL: optionalUrl(['http:', 'https:']),
  ADMIN_TOKEN: optionalString.refine((v) => v === undefined || v.length >= 16, {
    message: 'expected at least 16 characters',
  }),
  STATELY_INSPECT_URL: optionalUrl(['ws:', 'wss:']),
  ALERT_WEBHOOK_URL: optionalUrl(['http:', 'https:']),
  STARTUP_WARMUP: z.enum(['on', 'off']).default('on'),
  STARTUP_WARMUP_TIMEOUT_MS: z.coerce.number().int().min(100).max(300_000).default(15_000),
  LLM_CIRCUIT_FAILURES: z.coerce.number().int().min(1).max(1000).default(5),
  LLM_CIRCUIT_COOLDOWN_MS: z.coerce.number().int().min(100).max(3_600_000).default(30_000),
  STT_PROVIDER: z.enum(['openai-realtime', 'openai-transcriptions']).optional(),
  STT_MODEL: optionalString,
  STT_LANGUAGE: optionalString,
  STT_BASE_URL: optionalUrl(['http:', 'https:']),
  STT_API_KEY: optionalString,
  TTS_PROVIDER: z.enum(['openai']).optional(),
  TTS_MODEL: optionalString,
  TTS_BASE_URL: optionalUrl(['http:', 'https:']),
  TTS_API_KEY: optionalString,
  AUDIO_CACHE_MB: z.coerce.number().int().min(0).max(4096).default(64),
  TWILIO_API_BASE_URL: optionalUrl(['http:', 'https:']),
});

export type EnvConfig = Readonly<{
  port: number;
  host: string;
  dataDir: string;
  logLevel: z.infer<typeof envSchema>['LOG_LEVEL'];
  databaseUrl: string | undefined;
  redisUrl: string | undefined;
  /**
   * Prefixed to every Redis key and the invalidation channel, so several deployments (or test
   * runs) can share one Redis; every engine of one deployment must use the same prefix.
   */
  redisKeyPrefix: string;
  openai: Readonly<{ apiKey: string; baseURL: string | undefined }> | undefined;
  anthropic: Readonly<{ apiKey: string; baseURL: string | undefined }> | undefined;
  twilio: Readonly<{ authToken: string | undefined; accountSid: string | undefined }>;
  publicBaseUrl: string | undefined;
  adminToken: string | undefined;
  /** Alerts are POSTed here (once per code and company per window); unset = stored and logged only. */
  alertWebhookUrl: string | undefined;
  /** Where the @statelyai/inspect bridge sends every call's inspection events; unset = off. */
  statelyInspectUrl: string | undefined;
  /** One synthetic turn per company and provider connections before the engine reports ready. */
  startupWarmup: Readonly<{ enabled: boolean; timeoutMs: number }>;
  /** The LLM providers' circuit breakers. */
  llmCircuit: Readonly<{ failureThreshold: number; cooldownMs: number }>;
  /**
   * Speech to text and text to speech for Media Streams calls; both set or neither. Keys and base
   * URLs default to OPENAI_API_KEY / OPENAI_BASE_URL.
   */
  speech:
    | Readonly<{
        stt: Readonly<{
          provider: 'openai-realtime' | 'openai-transcriptions';
          apiKey: string;
          baseURL: string | undefined;
          model: string | undefined;
          language: string | undefined;
        }>;
        tts: Readonly<{
          provider: 'openai';
          apiKey: string;
          baseURL: string | undefined;
          model: string | undefined;
        }>;
        /** Pre-synthesized audio kept in memory, bytes. */
        audioCacheBytes: number;
      }>
    | undefined;
  /** Twilio's REST API base (a compatible fake in tests); unset = api.twilio.com. */
  twilioApiBaseUrl: string | undefined;
}>;

/** Reads and validates configuration; throws one ConfigError listing every problem by name. */
export function loadEnv(env: Readonly<Record<string, string | undefined>> = process.env): EnvConfig {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`));
  }
  const e = parsed.data;
  const problems: string[] = [];
  if ((e.STT_PROVIDER === undefined) !== (e.TTS_PROVIDER === undefined)) {
    problems.push(
      'STT_PROVIDER, TTS_PROVIDER: set both (Media Streams calls need speech in and out) or neither',
    );
  }
  const sttKey = e.STT_API_KEY ?? e.OPENAI_API_KEY;
  const ttsKey = e.TTS_API_KEY ?? e.OPENAI_API_KEY;
  // A local whisper server usually wants no key; OpenAI's realtime endpoint always does.
  if (e.STT_PROVIDER === 'openai-realtime' && sttKey === undefined)
    problems.push('STT_API_KEY: required for STT_PROVIDER=openai-realtime (or set OPENAI_API_KEY)');
  if (e.TTS_PROVIDER !== undefined && ttsKey === undefined && e.TTS_BASE_URL === undefined)
    problems.push('TTS_API_KEY: required for TTS_PROVIDER=openai (or set OPENAI_API_KEY)');
  if (problems.length > 0) throw new ConfigError(problems);
  const speech =
    e.STT_PROVIDER === undefined || e.TTS_PROVIDER === undefined
      ? undefined
      : {
          stt: {
            provider: e.STT_PROVIDER,
            apiKey: sttKey ?? 'none',
            baseURL: e.STT_BASE_URL ?? e.OPENAI_BASE_URL,
            model: e.STT_MODEL,
            language: e.STT_LANGUAGE,
          },
          tts: {
            provider: e.TTS_PROVIDER,
            apiKey: ttsKey ?? 'none',
            baseURL: e.TTS_BASE_URL ?? e.OPENAI_BASE_URL,
            model: e.TTS_MODEL,
          },
          audioCacheBytes: e.AUDIO_CACHE_MB * 1024 * 1024,
        };
  return Object.freeze({
    port: e.PORT,
    host: e.HOST,
    dataDir: e.DATA_DIR,
    logLevel: e.LOG_LEVEL,
    databaseUrl: e.DATABASE_URL,
    redisUrl: e.REDIS_URL,
    redisKeyPrefix: e.REDIS_KEY_PREFIX,
    openai:
      e.OPENAI_API_KEY === undefined ? undefined : { apiKey: e.OPENAI_API_KEY, baseURL: e.OPENAI_BASE_URL },
    anthropic:
      e.ANTHROPIC_API_KEY === undefined
        ? undefined
        : { apiKey: e.ANTHROPIC_API_KEY, baseURL: e.ANTHROPIC_BASE_URL },
    twilio: { authToken: e.TWILIO_AUTH_TOKEN, accountSid: e.TWILIO_ACCOUNT_SID },
    publicBaseUrl: e.PUBLIC_BASE_URL,
    adminToken: e.ADMIN_TOKEN,
    statelyInspectUrl: e.STATELY_INSPECT_URL,
    alertWebhookUrl: e.ALERT_WEBHOOK_URL,
    startupWarmup: { enabled: e.STARTUP_WARMUP === 'on', timeoutMs: e.STARTUP_WARMUP_TIMEOUT_MS },
    llmCircuit: { failureThreshold: e.LLM_CIRCUIT_FAILURES, cooldownMs: e.LLM_CIRCUIT_COOLDOWN_MS },
    speech,
    twilioApiBaseUrl: e.TWILIO_API_BASE_URL,
  });
}

/** True for 127.0.0.0/8, ::1 and IPv4-mapped loopback. */
export function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false;
  const a = address.startsWith('::ffff:') ? address.slice(7) : address;
  if (isIP(a) === 4) return a.startsWith('127.');
  return a === '::1';
}
