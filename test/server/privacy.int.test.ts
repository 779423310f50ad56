/** Caller numbers, what callers say and secrets stay out of the logs. */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, expect, test } from 'vitest';
import { TestCall } from '../../src/cli/call.ts';
import { startFakeAudioServer } from '../fakes/fakeAudioServer.ts';
import { startFakeRealtimeServer } from '../fakes/fakeRealtimeServer.ts';
import { startTestApp } from '../support/testApp.ts';
import { tone, TwilioSide } from '../support/twilioSide.ts';
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

test('a Media Streams call at debug level logs no audio, words, numbers, tokens or keys', async () => {
  let logged = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      logged += chunk.toString('utf8');
      done();
    },
  });
  const stt = await startFakeRealtimeServer({ apiKey: 'sk-stt-secret-0071' });
  const tts = await startFakeAudioServer();
  try {
    stt.script('Hi, this is Priya Raman, my number is 555 201 7788 and my basement drain is backing up');
    const authToken = 'secret-auth-token-0042';
    app = await startTestApp({
      env: {
        TWILIO_AUTH_TOKEN: authToken,
        STT_PROVIDER: 'openai-realtime',
        STT_API_KEY: 'sk-stt-secret-0071',
        STT_BASE_URL: stt.baseURL,
        TTS_PROVIDER: 'openai',
        TTS_API_KEY: 'sk-tts-secret-0072',
        TTS_BASE_URL: tts.baseURL,
      },
      app: { log: pino({ level: 'debug' }, sink) },
    });
    const t = new TwilioSide(app.server.url, authToken);
    await t.webhook();
    const local = t.streamUrl.replace(/^wss?:\/\/[^/]+/, app.server.url.replace('http', 'ws'));
    expect(await t.open({ url: local })).toBeNull();
    t.start();
    await t.until(() => t.of('switchboard.heard').length >= 1);
    t.utter();
    await t.until(() => t.of('switchboard.turn').length >= 1);
    t.send({ event: 'garbage', payload: tone });
    t.stop();
    await expect.poll(() => app!.engine.liveCalls).toBe(0);

    expect(logged).toContain('turn answered');
    const token = t.parameters['token']!;
    for (const secret of [
      'Priya',
      'Raman',
      '2017788',
      '201 7788',
      authToken,
      'sk-stt-secret',
      'sk-tts-secret',
      token,
      token.split('.')[1]!,
      tone.slice(0, 40),
      (t.of('media')[0]!['media'] as { payload: string }).payload.slice(0, 40),
    ]) {
      expect(logged).not.toContain(secret);
    }
  } finally {
    await app?.stop();
    app = null;
    await stt.close();
    await tts.close();
  }
});
