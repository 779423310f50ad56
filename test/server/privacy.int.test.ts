/** Caller numbers, what callers say and secrets stay out of the logs. */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, expect, test } from 'vitest';
import { TestCall } from '../../src/cli/call.ts';
import { startTestApp } from '../support/testApp.ts';
import type { TestApp } from '../support/testApp.ts';

let app: TestApp | null = null;
afterEach(async () => {
  await app?.stop();
  app = null;
});

test('a whole call at debug level logs decisions, never numbers, words or tokens', async () => {
  let logged = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      logged += chunk.toString('utf8');
      done();
    },
  });
  const authToken = 'secret-auth-token-0042';
  app = await startTestApp({
    env: {
      TWILIO_AUTH_TOKEN: authToken,
      OPENAI_API_KEY: 'sk-secret-key-0099',
      OPENAI_BASE_URL: 'http://127.0.0.1:9/v1',
    },
    app: { log: pino({ level: 'debug' }, sink) },
  });
  const call = new TestCall({ url: app.server.url, to: '+15550100100', from: '+15557654329', authToken });
  await call.connect();
  await call.say('Hi, this is Priya Raman, my number is 555 201 7788 and my basement drain is backing up');
  await call.say('Quintessential zebra marmalade');
  await call.close();
  await expect.poll(() => app!.engine.liveCalls).toBe(0);

  expect(logged).toContain('turn answered');
  for (const secret of [
    '5557654329',
    '7654329',
    '2017788',
    'Priya',
    'Raman',
    'zebra',
    'marmalade',
    authToken,
    'sk-secret-key',
  ]) {
    expect(logged).not.toContain(secret);
  }
});
