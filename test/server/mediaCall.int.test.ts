/**
 * Media Streams end to end: the real server, acting as Twilio over the real `<Connect><Stream>`
 * socket, with the real STT client against the fake realtime transcription server, the real TTS
 * client against the fake speech endpoint and (for Tier 3) the real OpenAI SDK against the fake
 * chat server. Audio is sent faster than real time: both VADs count audio time, not wall time.
 */
import { afterEach, describe, expect, test } from 'vitest';
import { createLocalEmbedder } from '../../src/routing/localEmbedder.ts';
import { getCall, listCalls } from '../../src/store/callRecords.ts';
import { twilioSignature } from '../../src/twilio/signature.ts';
import { startFakeAudioServer } from '../fakes/fakeAudioServer.ts';
import type { FakeAudioServer } from '../fakes/fakeAudioServer.ts';
import { startFakeOpenAiServer } from '../fakes/fakeOpenAiServer.ts';
import type { FakeServer } from '../fakes/fakeOpenAiServer.ts';
import { startFakeRealtimeServer } from '../fakes/fakeRealtimeServer.ts';
import type { FakeRealtimeServer } from '../fakes/fakeRealtimeServer.ts';
import { startFakeTwilioApi } from '../fakes/fakeTwilioApi.ts';
import type { FakeTwilioApi } from '../fakes/fakeTwilioApi.ts';
import { openTestStores } from '../support/storeApp.ts';
import { demoCompany, startTestApp } from '../support/testApp.ts';
import { ACCOUNT_SID, DEMO_NUMBER as DEMO, silence, tone, TwilioSide } from '../support/twilioSide.ts';
import type { TestApp } from '../support/testApp.ts';

const AUTH_TOKEN = 'test-auth-token-0123456789abcdef';

let app: TestApp | null = null;
const closers: Array<() => Promise<unknown>> = [];

afterEach(async () => {
  await app?.stop();
  app = null;
  for (const close of closers.splice(0)) await close();
});

interface Fakes {
  stt: FakeRealtimeServer;
  tts: FakeAudioServer;
}

async function startFakes(): Promise<Fakes> {
  const stt = await startFakeRealtimeServer({ apiKey: 'sk-test', silenceMsToStop: 200 });
  const tts = await startFakeAudioServer();
  closers.push(
    () => stt.close(),
    () => tts.close(),
  );
  return { stt, tts };
}

function mediaEnv(f: Fakes, extra: Record<string, string> = {}): Record<string, string> {
  return {
    STT_PROVIDER: 'openai-realtime',
    STT_API_KEY: 'sk-test',
    STT_BASE_URL: f.stt.baseURL,
    TTS_PROVIDER: 'openai',
    TTS_API_KEY: 'sk-test',
    TTS_BASE_URL: f.tts.baseURL,
    ...extra,
  };
}

async function mediaApp(f: Fakes, options: Parameters<typeof startTestApp>[0] = {}): Promise<TestApp> {
  return startTestApp({
    ...options,
    env: { ...mediaEnv(f), ...options.env },
    app: { media: { startTimeoutMs: 1000, heartbeatMs: 60_000 }, ...options.app },
  });
}

/** Connects, starts, and waits for the greeting's audio and its mark. */
async function connectCall(t: TwilioSide): Promise<void> {
  await t.webhook();
  expect(await t.open()).toBeNull();
  t.start();
  await t.until(() => t.of('switchboard.heard').length >= 1);
}

describe('the webhook', () => {
  test('answers <Connect><Stream> with the token in the path and as a <Parameter> when STT and TTS are configured', async () => {
    const f = await startFakes();
    app = await mediaApp(f, { env: { PUBLIC_BASE_URL: 'https://voice.example.com' } });
    const t = new TwilioSide(app.server.url);
    const twiml = await t.webhook();
    expect(twiml).toContain('<Connect action="https://voice.example.com/twilio/connect-action">');
    expect(t.streamUrl).toMatch(/^wss:\/\/voice\.example\.com\/twilio\/media\/[\w.-]+$/);
    expect(t.streamUrl).not.toContain('?');
    expect(t.parameters['company']).toBe('riverside-plumbing');
    expect(t.streamUrl.endsWith(`/${t.parameters['token']}`)).toBe(true);
  });

  test('keeps ConversationRelay for a company that asks for it, and without STT/TTS', async () => {
    const f = await startFakes();
    const company = await demoCompany();
    (company['voice'] as Record<string, unknown>)['transport'] = 'relay';
    app = await mediaApp(f, { company });
    expect(await new TwilioSide(app.server.url).webhook()).toContain('<ConversationRelay');
    await app.stop();
    app = await startTestApp();
    expect(await new TwilioSide(app.server.url).webhook()).toContain('<ConversationRelay');
  });
});

describe('the upgrade', () => {
  test('refuses a bad signature, a replayed token and a relay token before the socket exists', async () => {
    const f = await startFakes();
    app = await mediaApp(f, { env: { TWILIO_AUTH_TOKEN: AUTH_TOKEN } });
    const t = new TwilioSide(app.server.url, AUTH_TOKEN);
    await t.webhook();
    const local = t.streamUrl.replace(/^wss?:\/\/[^/]+/, app.server.url.replace('http', 'ws'));
    // Signed for the URL the server reconstructs from its Host header.
    expect(await t.open({ url: local, signature: 'not-a-signature' })).toBe(403);
    expect(await t.open({ url: local, signature: twilioSignature(AUTH_TOKEN, local, {}) })).toBeNull();
    t.ws!.close();
    // The token was spent by the first accepted upgrade.
    const replay = new TwilioSide(app.server.url, AUTH_TOKEN);
    expect(await replay.open({ url: local, signature: twilioSignature(AUTH_TOKEN, local, {}) })).toBe(403);
    // A ConversationRelay token does not open a media socket.
    const relayToken = local.replace(/\/twilio\/media\/.*/, '/twilio/media/forged.token');
    expect(
      await replay.open({ url: relayToken, signature: twilioSignature(AUTH_TOKEN, relayToken, {}) }),
    ).toBe(403);
    expect(app.engine.liveCalls).toBe(0);
  });

  test('closes a socket whose start carries another CallSid', async () => {
    const f = await startFakes();
    app = await mediaApp(f);
    const t = new TwilioSide(app.server.url);
    await t.webhook();
    expect(await t.open()).toBeNull();
    t.start(`CA${'f'.repeat(32)}`);
    await t.until(() => t.closed !== null);
    expect(t.closed).toEqual({ code: 1008, reason: 'call mismatch' });
    expect(app.engine.liveCalls).toBe(0);
  });
});

describe('a call', () => {
  test('greets, hears the caller through STT, answers with audio on the right streamSid, records costs, and cleans up on stop', async () => {
    const f = await startFakes();
    f.stt.script('How much do you charge to come out?');
    app = await mediaApp(f);
    const t = new TwilioSide(app.server.url);
    await connectCall(t);

    const greeting = t.of('switchboard.heard')[0]!;
    expect(greeting).toMatchObject({ turn: 0, interrupted: false });
    expect(String(greeting['heard'])).toContain('Riverside');
    const media = t.of('media');
    expect(media.length).toBeGreaterThan(10);
    for (const m of media) {
      expect(m.streamSid).toBe(t.streamSid);
      const payload = (m['media'] as { payload: string }).payload;
      expect(Buffer.from(payload, 'base64')).toHaveLength(160);
    }
    // The mark follows the greeting's audio.
    const firstMark = t.received.findIndex((m) => m.event === 'mark');
    expect(firstMark).toBeGreaterThan(t.received.findIndex((m) => m.event === 'media'));

    t.utter();
    await t.until(() => t.of('switchboard.turn').length >= 1);
    const turn = (t.of('switchboard.turn')[0]!['trace'] as { record: Record<string, unknown> }).record;
    expect(turn).toMatchObject({ utterance: 'How much do you charge to come out?', tier: 2 });
    await t.until(() => t.of('switchboard.heard').length >= 2);
    const audio = t.of('switchboard.audio').at(-1)!;
    expect(audio).toMatchObject({ turn: 1 });
    expect(audio['speechStoppedToFirstAudioMs']).toEqual(expect.any(Number));
    expect(t.of('switchboard.heard')[1]).toMatchObject({ turn: 1, heard: turn['reply'], interrupted: false });

    const sttConnection = await f.stt.connection(0);
    // Two 20 ms frames per append, the μ-law bytes forwarded untouched.
    expect(sttConnection.appends.length).toBeGreaterThan(20);
    const toneBytes = Buffer.from(tone, 'base64');
    expect(Buffer.from(sttConnection.appends[0]!, 'base64')).toEqual(Buffer.concat([toneBytes, toneBytes]));

    t.stop();
    await t.until(() => app!.engine.liveCalls === 0);
    await t.until(() => sttConnection.closed !== null);
    expect(sttConnection.closed?.by).toBe('client');
    const stt = app.ledger.recent().filter((e) => e.purpose === 'stt');
    expect(stt.length).toBeGreaterThan(0);
    expect(stt.reduce((ms, e) => ms + (e.audioMs ?? 0), 0)).toBeGreaterThanOrEqual(1000);
    expect(stt.every((e) => e.callSid === t.callSid)).toBe(true);
    expect(app.ledger.recent().some((e) => e.purpose === 'tts' && (e.audioMs ?? 0) > 0)).toBe(true);
  });

  test('a dropped STT socket reconnects and the call goes on', async () => {
    const f = await startFakes();
    f.stt.script('How much do you charge to come out?', 'How much do you charge to come out?');
    app = await mediaApp(f);
    const t = new TwilioSide(app.server.url);
    await connectCall(t);
    t.utter();
    await t.until(() => t.of('switchboard.turn').length >= 1);
    (await f.stt.connection(0)).drop();
    await f.stt.connection(1);
    t.utter();
    await t.until(() => t.of('switchboard.turn').length >= 2);
    expect(app.engine.liveCalls).toBe(1);
    const second = (t.of('switchboard.turn')[1]!['trace'] as { record: Record<string, unknown> }).record;
    expect(second).toMatchObject({ turn: 2, tier: 2 });
    t.stop();
  });

  test('stores what the caller heard with the turn', async () => {
    const f = await startFakes();
    f.stt.script('How much do you charge to come out?');
    const stores = await openTestStores(); // DATABASE_URL's scratch schema, or PGlite
    closers.push(() => stores.dispose());
    app = await mediaApp(f, {
      env: { ...stores.env },
      app: { db: stores.testDb.reopen(), media: { startTimeoutMs: 1000, heartbeatMs: 60_000 } },
    });
    const t = new TwilioSide(app.server.url);
    await connectCall(t);
    t.utter();
    await t.until(() => t.of('switchboard.heard').length >= 2);
    t.stop();
    await t.until(() => app!.engine.liveCalls === 0);
    await app.recorder!.flush();
    const [call] = await listCalls(app.db!, { companyId: 'riverside-plumbing' });
    const stored = await getCall(app.db!, call!.id);
    expect(stored?.turns[0]).toMatchObject({
      turn: 1,
      heard: t.of('switchboard.heard')[1]!['heard'],
      interrupted: false,
    });
    expect(stored?.turns[0]?.heard).toMatch(/\w/);
  });

  test('a barge-in mid-reply sends clear at once, ignores the marks from before it and records that nothing was heard', async () => {
    const f = await startFakes();
    f.stt.script('How much do you charge to come out?', 'hello');
    app = await mediaApp(f);
    const t = new TwilioSide(app.server.url);
    await connectCall(t);
    t.echoMarks = false; // the caller is still hearing the reply
    t.utter();
    await t.until(() => t.of('switchboard.audio').some((a) => a['turn'] === 1));
    await t.until(() => t.of('mark').length >= 2);
    const staleMark = t.of('mark').at(-1)!['mark'];
    const cutAt = t.received.length;
    t.utter(300, 0);
    await t.until(() => t.of('clear').length >= 1);
    expect(t.received.slice(cutAt).some((m) => m.event === 'clear')).toBe(true);
    await t.until(() => t.of('switchboard.heard').some((h) => h['interrupted'] === true));
    expect(t.of('switchboard.heard').find((h) => h['interrupted'] === true)).toMatchObject({
      turn: 1,
      heard: '',
    });
    // Twilio echoes the marks of the audio it cleared: they must not count as heard.
    t.send({ event: 'mark', mark: staleMark });
    t.audio(silence, 20);
    await t.until(() => t.of('switchboard.turn').length >= 2);
    const heardReports = t.of('switchboard.heard').filter((h) => h['turn'] === 1);
    expect(heardReports).toHaveLength(1);
    t.stop();
  });

  test('DTMF 0 speaks the transfer line, leaves a handoff note and ends the stream; the action webhook dials', async () => {
    const f = await startFakes();
    app = await mediaApp(f);
    const t = new TwilioSide(app.server.url);
    await connectCall(t);
    t.send({ event: 'dtmf', dtmf: { track: 'inbound_track', digit: '0' } });
    await t.until(() => t.closed !== null);
    expect(t.closed?.code).toBe(1000);
    expect(t.of('switchboard.heard').at(-1)!['heard']).toContain('transfer');
    const params = { CallSid: t.callSid, AccountSid: ACCOUNT_SID, To: DEMO };
    const res = await fetch(`${app.server.url}/twilio/connect-action`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(params).toString(),
    });
    expect(await res.text()).toMatch(/<Dial>\+1\d+<\/Dial>/);
    // The note is taken once: a second request hangs up.
    const again = await fetch(`${app.server.url}/twilio/connect-action`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(params).toString(),
    });
    expect(await again.text()).toContain('<Hangup/>');
  });

  test('with Twilio credentials, a transfer updates the live call through the REST API', async () => {
    const f = await startFakes();
    const api: FakeTwilioApi = await startFakeTwilioApi({ accountSid: ACCOUNT_SID, authToken: AUTH_TOKEN });
    closers.push(() => api.close());
    app = await mediaApp(f, {
      env: {
        TWILIO_ACCOUNT_SID: ACCOUNT_SID,
        TWILIO_AUTH_TOKEN: AUTH_TOKEN,
        TWILIO_API_BASE_URL: api.baseUrl,
      },
    });
    const t = new TwilioSide(app.server.url, AUTH_TOKEN);
    await t.webhook();
    const local = t.streamUrl.replace(/^wss?:\/\/[^/]+/, app.server.url.replace('http', 'ws'));
    expect(await t.open({ url: local, signature: twilioSignature(AUTH_TOKEN, local, {}) })).toBeNull();
    t.start();
    await t.until(() => t.of('switchboard.heard').length >= 1);
    t.send({ event: 'dtmf', dtmf: { track: 'inbound_track', digit: '0' } });
    await t.until(() => t.closed !== null);
    expect(api.requests).toHaveLength(1);
    expect(api.requests[0]).toMatchObject({ callSid: t.callSid });
    expect(JSON.stringify(api.requests[0])).toContain('<Dial>');
  });
});

describe('batch transcription (a local whisper server)', () => {
  test('segments the caller with the local VAD and sends each utterance as a WAV', async () => {
    const f = await startFakes();
    f.tts.scriptTranscriptions({ type: 'text', text: 'How much do you charge to come out?' });
    app = await mediaApp(f, {
      env: { STT_PROVIDER: 'openai-transcriptions', STT_BASE_URL: f.tts.baseURL, STT_API_KEY: '' },
    });
    const t = new TwilioSide(app.server.url);
    await connectCall(t);
    t.audio(silence, 25); // the line's noise floor, as on a real call before anyone speaks
    t.utter(600, 600);
    await t.until(() => t.of('switchboard.turn').length >= 1);
    const turn = (t.of('switchboard.turn')[0]!['trace'] as { record: Record<string, unknown> }).record;
    expect(turn).toMatchObject({ utterance: 'How much do you charge to come out?', tier: 2 });
    const upload = await f.tts.transcriptionSettled(0);
    expect(upload.wav).toMatchObject({ sampleRate: 8000, channels: 1 });
    // The utterance, with a little audio either side: not the silence before or after it.
    const seconds = upload.wav!.samples.length / 8000;
    expect(seconds).toBeGreaterThan(0.5);
    expect(seconds).toBeLessThan(1.5);
    t.stop();
    await t.until(() => app!.engine.liveCalls === 0);
    expect(app.ledger.recent().some((e) => e.purpose === 'stt' && (e.audioMs ?? 0) > 0)).toBe(true);
  });
});

/** The demo company answering off-script questions with Tier 3 (no warmup), with no audio cache. */
async function llmApp(f: Fakes, llm: FakeServer): Promise<TestApp> {
  const company = await demoCompany();
  const c = company as { understanding?: unknown; gatekeeper: Record<string, unknown>; warmup?: unknown };
  c.understanding = { mode: 'rules' };
  c.gatekeeper['enableLLMFallback'] = true;
  c.gatekeeper['llm'] = { providers: ['openai:gpt-4o-mini'], timeoutMs: 10_000 };
  c.warmup = { enabled: false };
  return mediaApp(f, {
    company,
    env: { OPENAI_API_KEY: 'sk-test', OPENAI_BASE_URL: llm.baseURL, AUDIO_CACHE_MB: '0' },
    app: { embedder: createLocalEmbedder() },
  });
}

describe('LLM replies', () => {
  let llm: FakeServer | null = null;
  afterEach(async () => {
    await llm?.close();
    llm = null;
  });

  test('stream to TTS sentence by sentence: the first audio leaves before the answer is complete', async () => {
    const f = await startFakes();
    f.stt.script('Can you tell me something funny about plumbers?');
    llm = await startFakeOpenAiServer();
    llm.script({
      type: 'text',
      text: 'Ha, plumbers never leak a secret. Now, how can I help with your plumbing today? I am listening.',
      firstTokenDelayMs: 20,
      tokenIntervalMs: 60,
    });
    app = await llmApp(f, llm);
    const t = new TwilioSide(app.server.url);
    await connectCall(t);
    const ttsBefore = f.tts.speechRequests.length;
    t.utter();
    await t.until(() => t.of('switchboard.audio').length >= 2, 10_000);
    // The LLM was still streaming when the first sentence's audio went out.
    expect(llm.requests.at(-1)!.settledAtMs).toBeNull();
    await t.until(() => t.of('switchboard.heard').length >= 2, 10_000);
    const texts = f.tts.speechRequests.slice(ttsBefore).map((r) => String(r.body['input']));
    expect(texts.length).toBeGreaterThanOrEqual(2);
    expect(texts[0]).toBe('Ha, plumbers never leak a secret.');
    expect(t.of('switchboard.heard')[1]!['heard']).toBe(
      'Ha, plumbers never leak a secret. Now, how can I help with your plumbing today? I am listening.',
    );
    t.stop();
  });

  test('a barge-in during a live reply aborts its TTS request on the wire', async () => {
    const f = await startFakes();
    f.stt.script('Can you tell me something funny about plumbers?');
    llm = await startFakeOpenAiServer();
    llm.script({ type: 'text', text: 'Plumbers are the unsung heroes of every home, and we love the work.' });
    app = await llmApp(f, llm);
    const t = new TwilioSide(app.server.url);
    await connectCall(t);
    t.echoMarks = false;
    // The reply's speech streams slowly: 8 s of audio in 20 ms chunks.
    f.tts.scriptSpeech({ type: 'pcm', durationMs: 8000, chunkIntervalMs: 20 });
    const before = t.of('media').length;
    t.utter();
    await t.until(() => t.of('media').length > before + 10);
    const live = f.tts.speechRequests.length - 1;
    t.utter(300, 0);
    await t.until(() => t.of('clear').length >= 1);
    const cut = await f.tts.speechSettled(live);
    expect(cut.clientWentAway).not.toBe('no');
    expect(cut.bytesSent).toBeLessThan(cut.bytesPlanned);
    const cancelled = app.ledger.recent().filter((e) => e.purpose === 'tts' && e.action === 'cancelled');
    expect(cancelled.length).toBeGreaterThanOrEqual(1);
    t.stop();
  });
});
