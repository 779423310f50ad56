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
});
