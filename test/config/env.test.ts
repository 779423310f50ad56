import { describe, expect, test } from 'vitest';
import { isLoopback, loadEnv } from '../../src/config/env.ts';
import { ConfigError } from '../../src/errors.ts';

describe('loadEnv', () => {
  test('applies the documented defaults', () => {
    const env = loadEnv({});
    expect(env).toMatchObject({ port: 8080, host: '0.0.0.0', dataDir: './data', logLevel: 'info' });
    expect(env.openai).toBeUndefined();
    expect(env.anthropic).toBeUndefined();
    expect(env.databaseUrl).toBeUndefined();
    expect(Object.isFrozen(env)).toBe(true);
  });

  test('reports every problem at once, each by variable name', () => {
    let error: unknown;
    try {
      loadEnv({
        PORT: 'eighty',
        LOG_LEVEL: 'loud',
        DATABASE_URL: 'mysql://x',
        REDIS_URL: 'not a url',
        TWILIO_ACCOUNT_SID: 'AB123',
        ADMIN_TOKEN: 'short',
        OPENAI_BASE_URL: 'ftp://x',
      });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const names = (error as ConfigError).problems.map((p) => p.split(':')[0]);
    expect(names.sort()).toEqual(
      [
        'ADMIN_TOKEN',
        'DATABASE_URL',
        'LOG_LEVEL',
        'OPENAI_BASE_URL',
        'PORT',
        'REDIS_URL',
        'TWILIO_ACCOUNT_SID',
      ].sort(),
    );
  });

  test('a provider key turns its provider on; blank values count as unset', () => {
    const env = loadEnv({
      OPENAI_API_KEY: 'sk-1',
      OPENAI_BASE_URL: 'http://127.0.0.1:9/v1',
      ANTHROPIC_API_KEY: '  ',
    });
    expect(env.openai).toEqual({ apiKey: 'sk-1', baseURL: 'http://127.0.0.1:9/v1' });
    expect(env.anthropic).toBeUndefined();
  });
});

describe('startup warmup and circuit breaker settings', () => {
  test('default to a warmup of at most 15 s and a breaker of 5 failures / 30 s', () => {
    expect(loadEnv({})).toMatchObject({
      startupWarmup: { enabled: true, timeoutMs: 15_000 },
      llmCircuit: { failureThreshold: 5, cooldownMs: 30_000 },
    });
  });

  test('are read from STARTUP_WARMUP*, LLM_CIRCUIT_* and checked', () => {
    expect(
      loadEnv({
        STARTUP_WARMUP: 'off',
        STARTUP_WARMUP_TIMEOUT_MS: '5000',
        LLM_CIRCUIT_FAILURES: '3',
        LLM_CIRCUIT_COOLDOWN_MS: '10000',
      }),
    ).toMatchObject({
      startupWarmup: { enabled: false, timeoutMs: 5000 },
      llmCircuit: { failureThreshold: 3, cooldownMs: 10_000 },
    });
    expect(() => loadEnv({ STARTUP_WARMUP: 'maybe', LLM_CIRCUIT_FAILURES: '0' })).toThrow(
      /STARTUP_WARMUP[\s\S]*LLM_CIRCUIT_FAILURES/,
    );
  });
});

describe('isLoopback', () => {
  test.each([
    ['127.0.0.1', true],
    ['127.8.0.3', true],
    ['::1', true],
    ['::ffff:127.0.0.1', true],
    ['10.0.0.1', false],
    ['::ffff:192.168.1.2', false],
    ['2001:db8::1', false],
    [undefined, false],
  ])('%s → %s', (address, expected) => {
    expect(isLoopback(address)).toBe(expected);
  });

  test('Media Streams speech: both providers or neither, keys and base URLs default to OpenAI', () => {
    expect(loadEnv({}).speech).toBeUndefined();
    const env = loadEnv({
      OPENAI_API_KEY: 'sk-test',
      OPENAI_BASE_URL: 'http://127.0.0.1:9/v1',
      STT_PROVIDER: 'openai-realtime',
      TTS_PROVIDER: 'openai',
      TTS_MODEL: 'tts-1',
      AUDIO_CACHE_MB: '8',
    });
    expect(env.speech).toMatchObject({
      stt: { provider: 'openai-realtime', apiKey: 'sk-test', baseURL: 'http://127.0.0.1:9/v1' },
      tts: { provider: 'openai', apiKey: 'sk-test', model: 'tts-1' },
      audioCacheBytes: 8 * 1024 * 1024,
    });
    // A local whisper server needs no key.
    const local = loadEnv({
      STT_PROVIDER: 'openai-transcriptions',
      STT_BASE_URL: 'http://127.0.0.1:8000/v1',
      TTS_PROVIDER: 'openai',
      TTS_BASE_URL: 'http://127.0.0.1:8001/v1',
    });
    expect(local.speech?.stt).toMatchObject({ provider: 'openai-transcriptions', apiKey: 'none' });

    const problems = (vars: Record<string, string>) => {
      try {
        loadEnv(vars);
      } catch (err) {
        return (err as ConfigError).problems.map((p) => p.split(':')[0]);
      }
      return [];
    };
    expect(problems({ STT_PROVIDER: 'openai-realtime', OPENAI_API_KEY: 'k' })).toEqual([
      'STT_PROVIDER, TTS_PROVIDER',
    ]);
    expect(problems({ STT_PROVIDER: 'openai-realtime', TTS_PROVIDER: 'openai' })).toEqual([
      'STT_API_KEY',
      'TTS_API_KEY',
    ]);
    expect(problems({ STT_PROVIDER: 'whisper', TTS_PROVIDER: 'openai' })).toEqual(['STT_PROVIDER']);
  });
});
