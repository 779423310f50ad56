/**
 * The test client's audio mode against a scripted fake engine: an HTTP server answering the voice
 * webhook with `<Connect><Stream>` TwiML and a WebSocket server that records every frame the client
 * sends and plays a script of media, marks, clears and trace frames back.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { IncomingMessage, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { afterAll, afterEach, describe, expect, test } from 'vitest';
import { WebSocketServer } from 'ws';
import type { WebSocket } from 'ws';
import { decodeMulaw, linearToMulaw } from '../../src/audio/mulaw.ts';
import { pcm16ToWav } from '../../src/audio/wav.ts';
import { readWav } from '../../src/audio/wavRead.ts';
import type { MediaCallStep } from '../../src/cli/mediaCall.ts';
import { parseStreamTwiml, prepareUtterance, runMediaCall } from '../../src/cli/mediaCall.ts';
import type { Utterance } from '../../src/cli/twilioStreamSimulator.ts';
import { isValidTwilioSignature } from '../../src/twilio/signature.ts';
import { tone } from '../audio/signals.ts';
import { readBody } from '../../src/readBody.ts';
import { runNode } from '../support/runNode.ts';
import { startTestApp } from '../support/testApp.ts';

// ---------------------------------------------------------------------------------------------------
// The fake engine

type Json = Record<string, unknown>;

interface Received {
  /** performance.now() at the engine when the frame arrived. */
  readonly at: number;
  readonly msg: Json;
}

/** One stream as the script sees it. */
interface FakeStream {
  readonly streamSid: string;
  readonly received: Received[];
  /** Sends `ms` of a tone as 20 ms media frames, all at once (TTS is faster than real time). */
  sendAudio(ms: number, hz?: number): void;
  sendMark(name: string): number;
  sendClear(): number;
  send(frame: Json | string): void;
  sendBinary(): void;
  close(code: number, reason: string): void;
}

interface Script {
  onStart?(s: FakeStream): void;
  /** The caller's n-th burst of speech (n from 1) began / ended (200 ms of silence after it). */
  onSpeechStart?(s: FakeStream, n: number): void;
  onSpeechEnd?(s: FakeStream, n: number): void;
  onMark?(s: FakeStream, name: string): void;
  onDtmf?(s: FakeStream, digit: string): void;
}

interface FakeEngineOptions {
  readonly authToken?: string;
  readonly publicBaseUrl?: string;
  /** TwiML for a stream URL; default: `<Connect><Stream>` with two parameters. */
  readonly twiml?: (streamUrl: string) => string;
  readonly script?: Script;
}

interface FakeEngine {
  readonly url: string;
  readonly webhooks: Array<{ form: Record<string, string>; signatureValid: boolean | null }>;
  readonly upgrades: Array<{ path: string; trace: unknown; signatureValid: boolean | null }>;
  readonly streams: FakeStream[];
  close(): Promise<void>;
}

const PARAMETERS = { wsToken: 'grant-abc', tenant: 't&1' };

function streamTwiml(url: string): string {
  return (
    '<?xml version="1.0" encoding="UTF-8"?><Response><Connect action="https://voice.example.test/twilio/connect-action">' +
    `<Stream url="${url}"><Parameter name="wsToken" value="grant-abc"/><Parameter name="tenant" value="t&amp;1"/>` +
    '</Stream></Connect></Response>'
  );
}

function toneMulaw(ms: number, hz: number): Buffer {
  const samples = tone(hz, 8000, ms * 8, 8000);
  return Buffer.from(Array.from(samples, (s) => linearToMulaw(s)));
}

function isVoiced(payload: string): boolean {
  const bytes = Buffer.from(payload, 'base64');
  const pcm = new Int16Array(bytes.length);
  decodeMulaw(bytes, pcm);
  let sum = 0;
  for (const s of pcm) sum += Math.abs(s);
  return sum / pcm.length > 300;
}

async function startFakeEngine(options: FakeEngineOptions = {}): Promise<FakeEngine> {
  const webhooks: FakeEngine['webhooks'] = [];
  const upgrades: FakeEngine['upgrades'] = [];
  const streams: FakeStream[] = [];
  let base = '';
  const publicBase = () => options.publicBaseUrl ?? base;
  const wsBase = () => {
    const url = new URL(publicBase());
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    return url;
  };
  /** Twilio's own check of the signature a request carries (null when the fake has no token). */
  const signatureValid = (req: IncomingMessage, url: string, params: Record<string, string>) => {
    const signature = req.headers['x-twilio-signature'];
    return options.authToken === undefined
      ? null
      : isValidTwilioSignature(
          options.authToken,
          typeof signature === 'string' ? signature : undefined,
          url,
          params,
        );
  };
  const server: Server = createServer((req, res) => {
    void (async () => {
      const { body } = await readBody(req, 1 << 20);
      const form = Object.fromEntries(new URLSearchParams(body.toString('utf8')));
      webhooks.push({
        form,
        signatureValid: signatureValid(req, new URL('/twilio/voice', publicBase()).href, form),
      });
      const streamUrl = new URL('/twilio/media/tok-123', wsBase()).href;
      res.writeHead(200, { 'content-type': 'text/xml' });
      res.end((options.twiml ?? streamTwiml)(streamUrl));
    })();
  });
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    upgrades.push({
      path: req.url ?? '',
      trace: req.headers['x-switchboard-trace'],
      signatureValid: signatureValid(req, new URL(req.url ?? '/', wsBase()).href, {}),
    });
    wss.handleUpgrade(req, socket, head, (ws) => handleStream(ws));
  });

  const handleStream = (ws: WebSocket) => {
    const received: Received[] = [];
    const script = options.script ?? {};
    let streamSid = '';
    let speaking = false;
    let bursts = 0;
    let silentFrames = 0;
    const send = (frame: Json | string) => ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
    const stream: FakeStream = {
      get streamSid() {
        return streamSid;
      },
      received,
      sendAudio(ms, hz = 440) {
        const audio = toneMulaw(ms, hz);
        for (let i = 0; i < audio.length; i += 160)
          send({
            event: 'media',
            streamSid,
            media: { payload: audio.subarray(i, i + 160).toString('base64') },
          });
      },
      sendMark(name) {
        send({ event: 'mark', streamSid, mark: { name } });
        return performance.now();
      },
      sendClear() {
        send({ event: 'clear', streamSid });
        return performance.now();
      },
      send,
      sendBinary: () => ws.send(Buffer.from([1, 2, 3]), { binary: true }),
      close: (code, reason) => ws.close(code, reason),
    };
    streams.push(stream);
    ws.on('message', (data) => {
      const msg = JSON.parse((data as Buffer).toString('utf8')) as Json;
      received.push({ at: performance.now(), msg });
      if (msg['event'] === 'start') {
        streamSid = msg['streamSid'] as string;
        script.onStart?.(stream);
      } else if (msg['event'] === 'mark') {
        script.onMark?.(stream, (msg['mark'] as Json)['name'] as string);
      } else if (msg['event'] === 'dtmf') {
        script.onDtmf?.(stream, (msg['dtmf'] as Json)['digit'] as string);
      } else if (msg['event'] === 'media') {
        const voiced = isVoiced((msg['media'] as Json)['payload'] as string);
        if (voiced && !speaking) {
          speaking = true;
          bursts++;
          script.onSpeechStart?.(stream, bursts);
        }
        silentFrames = voiced ? 0 : silentFrames + 1;
        if (speaking && silentFrames >= 10) {
          speaking = false;
          script.onSpeechEnd?.(stream, bursts);
        }
      }
    });
  };

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url: base,
    webhooks,
    upgrades,
    streams,
    close: () =>
      new Promise<void>((resolve) => {
        for (const client of wss.clients) client.terminate();
        wss.close();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

let engine: FakeEngine | null = null;
afterEach(async () => {
  await engine?.close();
  engine = null;
});

/** A loud tone of `ms` at 16 kHz (so resampling is on the path), as the caller's utterance. */
function toneUtterance(ms: number, label = `tone-${ms}ms`): Utterance {
  return prepareUtterance('audio', label, tone(500, 12_000, ms * 16, 16_000), 16_000);
}

const say = (ms: number): MediaCallStep => ({ kind: 'utterance', utterance: toneUtterance(ms) });

/** A TurnTrace, as the engine's `switchboard.turn` frame carries it. */
const TURN_TRACE = {
  record: {
    turn: 1,
    utterance: 'what are your hours',
    reply: 'We open at eight.',
    slots: {},
    situation: null,
    reconciled: false,
    reconcileReason: null,
    tier: 1,
    confidence: 0.91,
    tier1Confidence: 0.91,
    tier2Confidence: null,
    category: 'hours',
    scenarioId: 'hours-open',
    warmup: 'none',
    warmupReason: null,
    fallbackKind: null,
    next: 'listen',
    timings: { captureMs: 3, detectMs: 1.5, tier1Ms: 0.4, tier2Ms: null, providerMs: 0 },
  },
  latencyMs: 12,
  engineMs: 12,
  costUsd: 0,
  costEstimated: false,
};

const media = (received: Received[]) => received.filter((r) => r.msg['event'] === 'media');
const voicedFrames = (received: Received[]) =>
  media(received).filter((r) => isVoiced((r.msg['media'] as Json)['payload'] as string));

// ---------------------------------------------------------------------------------------------------

describe('TwiML', () => {
  test('reads the stream URL, the action and the parameters (unescaped)', () => {
    expect(parseStreamTwiml(streamTwiml('wss://h.example/twilio/media/x'))).toEqual({
      streamUrl: 'wss://h.example/twilio/media/x',
      actionUrl: 'https://voice.example.test/twilio/connect-action',
      parameters: PARAMETERS,
    });
  });
});

describe('runMediaCall against a scripted engine', { timeout: 20_000 }, () => {
  test('sends Twilio-shaped frames in real time and reports the turn with the engine trace', async () => {
    const sentMarks = new Map<string, number>();
    engine = await startFakeEngine({
      script: {
        onStart(s) {
          s.sendAudio(300);
          sentMarks.set('greeting', s.sendMark('greeting'));
        },
        onSpeechEnd(s) {
          s.send({ event: 'switchboard.turn', streamSid: s.streamSid, trace: TURN_TRACE });
          s.send({
            event: 'switchboard.audio',
            streamSid: s.streamSid,
            turn: 1,
            source: 'tts',
            speechStoppedToFinalMs: 120,
            finalToFirstAudioMs: 80,
            ttsFirstAudioMs: null,
          });
          s.sendAudio(400);
          sentMarks.set('reply-1', s.sendMark('reply-1'));
          s.send({ event: 'switchboard.custom', detail: 'x' });
        },
        onMark(s, name) {
          if (name === 'reply-1')
            s.send({ event: 'switchboard.heard', turn: 1, heard: 'We open at eight.', interrupted: false });
        },
      },
    });
    const { report } = await runMediaCall({
      url: engine.url,
      to: '+15550100100',
      from: '+15555550123',
      steps: [say(1000)],
      replyQuietMs: 300,
    });

    const { received } = engine.streams[0]!;
    const msgs = received.map((r) => r.msg);
    expect(msgs[0]).toEqual({ event: 'connected', protocol: 'Call', version: '1.0.0' });
    const callSid = engine.webhooks[0]!.form['CallSid'];
    expect(callSid).toMatch(/^CA[0-9a-f]{32}$/);
    expect(msgs[1]).toEqual({
      event: 'start',
      sequenceNumber: '1',
      start: {
        accountSid: `AC${'0'.repeat(32)}`,
        streamSid: report.streamSid,
        callSid,
        tracks: ['inbound'],
        customParameters: PARAMETERS,
        mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
      },
      streamSid: report.streamSid,
    });
    expect(report.streamSid).toMatch(/^MZ[0-9a-f]{32}$/);
    // Every later frame is numbered, as a string, with no gaps.
    expect(msgs.slice(1).map((m) => m['sequenceNumber'])).toEqual(msgs.slice(1).map((_, i) => String(i + 1)));
    const frames = media(received);
    frames.forEach((f, i) => {
      expect(f.msg).toEqual({
        event: 'media',
        sequenceNumber: expect.any(String) as string,
        media: {
          track: 'inbound',
          chunk: String(i + 1),
          timestamp: String(i * 20),
          payload: expect.any(String) as string,
        },
        streamSid: report.streamSid,
      });
      expect(Buffer.from((f.msg['media'] as Json)['payload'] as string, 'base64')).toHaveLength(160);
    });
    // Real time: the 50 frames of the one-second utterance span about a second, and overall the
    // stream runs at 50 frames a second.
    const voiced = voicedFrames(received);
    expect(voiced).toHaveLength(50);
    const spanMs = voiced.at(-1)!.at - voiced[0]!.at;
    expect(spanMs).toBeGreaterThan(800);
    expect(spanMs).toBeLessThan(1600);
    const streamMs = frames.at(-1)!.at - frames[0]!.at;
    expect(frames.length - 1).toBeGreaterThan((streamMs / 20) * 0.9);
    expect(frames.length - 1).toBeLessThan((streamMs / 20) * 1.1 + 2);
    // Marks come back once their audio has played: the greeting's 300 ms, the reply's 400 ms.
    const echoAt = (name: string) =>
      received.find((r) => r.msg['event'] === 'mark' && (r.msg['mark'] as Json)['name'] === name)!.at;
    expect(echoAt('greeting') - sentMarks.get('greeting')!).toBeGreaterThanOrEqual(295);
    expect(echoAt('greeting') - sentMarks.get('greeting')!).toBeLessThan(450);
    expect(echoAt('reply-1') - sentMarks.get('reply-1')!).toBeGreaterThanOrEqual(395);
    expect(echoAt('reply-1') - sentMarks.get('reply-1')!).toBeLessThan(550);
    const markEcho = received.find((r) => r.msg['event'] === 'mark')!.msg;
    expect(markEcho).toEqual({
      event: 'mark',
      sequenceNumber: expect.any(String) as string,
      streamSid: report.streamSid,
      mark: { name: 'greeting' },
    });
    // The caller spoke only after the greeting had played (300 ms) and the line was quiet (300 ms).
    expect(voiced[0]!.at - sentMarks.get('greeting')!).toBeGreaterThan(580);
    // It hung up with stop, numbered like the rest.
    expect(msgs.at(-1)).toEqual({
      event: 'stop',
      sequenceNumber: String(msgs.length - 1),
      stop: { accountSid: `AC${'0'.repeat(32)}`, callSid },
      streamSid: report.streamSid,
    });

    expect(report.greeting).toMatchObject({ index: 0, sent: null, replyAudioMs: 300, marksEchoed: 1 });
    expect(report.turns).toHaveLength(1);
    const turn = report.turns[0]!;
    expect(turn).toMatchObject({
      index: 1,
      sent: { kind: 'audio', label: 'tone-1000ms', audioMs: 1000 },
      transcript: 'what are your hours',
      reply: 'We open at eight.',
      audio: {
        turn: 1,
        source: 'tts',
        timings: { speechStoppedToFinalMs: 120, finalToFirstAudioMs: 80, ttsFirstAudioMs: null },
      },
      heard: [{ turn: 1, heard: 'We open at eight.', interrupted: false }],
      replyAudioMs: 400,
      marksEchoed: 1,
      clears: 0,
      bargeIn: null,
      timedOut: false,
    });
    expect(turn.engine).toMatchObject({ latencyMs: 12, record: { scenarioId: 'hours-open' } });
    expect(turn.traces.map((t) => t.frame)).toEqual([{ event: 'switchboard.custom', detail: 'x' }]);
    // The engine answers 200 ms after the speech ended (its silence detector), plus delivery.
    expect(turn.speechEndAtMs! - turn.speechStartAtMs!).toBeCloseTo(980, -2);
    expect(turn.responseMs).toBeGreaterThanOrEqual(195);
    expect(turn.responseMs).toBeLessThan(500);
    expect(report.end).toMatchObject({ by: 'caller', code: 1000 });
    expect(report.totals).toMatchObject({ audioReceivedMs: 700, marksEchoed: 2, clears: 0 });
    expect(report.problems).toEqual([]);
    expect(engine.upgrades[0]).toMatchObject({
      path: '/twilio/media/tok-123',
      trace: '1',
      signatureValid: null,
    });
  });

  test('barge-in: the next utterance starts into the reply, clear flushes its mark at once and cuts the saved audio', async () => {
    let clearedAt = 0;
    engine = await startFakeEngine({
      script: {
        onStart: (s) => s.sendAudio(100),
        onSpeechStart(s, n) {
          if (n === 2) clearedAt = s.sendClear();
        },
        onSpeechEnd(s, n) {
          s.sendAudio(n === 1 ? 2000 : 300);
          s.sendMark(`reply-${n}`);
        },
      },
    });
    const { report, playedAudio } = await runMediaCall({
      url: engine.url,
      to: '+15550100100',
      from: '+15555550123',
      steps: [say(600), say(600)],
      bargeInAfterMs: 500,
      replyQuietMs: 300,
      keepPlayedAudio: true,
    });
    const { received } = engine.streams[0]!;
    const echo = received.find(
      (r) => r.msg['event'] === 'mark' && (r.msg['mark'] as Json)['name'] === 'reply-1',
    )!;
    // Flushed by the clear, not played to the end (that would be 2 s later).
    expect(echo.at - clearedAt).toBeLessThan(150);
    const [first, second] = report.turns;
    expect(first).toMatchObject({ bargeIn: null, replyAudioMs: 2000, clears: 0 });
    expect(second!.bargeIn!.afterReplyAudioMs).toBeGreaterThanOrEqual(500);
    expect(second!.bargeIn!.afterReplyAudioMs).toBeLessThan(700);
    expect(second).toMatchObject({ clears: 1, replyAudioMs: 300, marksEchoed: 2 });
    expect(second!.clearAfterSpeechStartMs).toBeGreaterThanOrEqual(0);
    expect(second!.clearAfterSpeechStartMs).toBeLessThan(250);
    // Heard: the 100 ms greeting, 500–700 ms of the first reply (not its 2 s), all of the second.
    const heardMs = playedAudio!.filter((s) => s !== 0).length / 8;
    expect(heardMs).toBeGreaterThan(850);
    expect(heardMs).toBeLessThan(1300);
  });

  test('signs the webhook and the upgrade for the public URL, and dials the stream at the local server', async () => {
    const authToken = 'test-auth-token';
    const publicBaseUrl = 'https://voice.example.test';
    engine = await startFakeEngine({ authToken, publicBaseUrl, script: { onStart: (s) => s.sendAudio(60) } });
    const call = (token: string) =>
      runMediaCall({
        url: engine!.url,
        to: '+15550100100',
        from: '+15555550123',
        steps: [],
        authToken: token,
        publicBaseUrl,
        replyQuietMs: 50,
      });
    const { report } = await call(authToken);
    expect(engine.webhooks[0]!.signatureValid).toBe(true);
    expect(engine.upgrades[0]).toMatchObject({
      path: '/twilio/media/tok-123',
      trace: '1',
      signatureValid: true,
    });
    expect(report).toMatchObject({
      streamUrl: 'wss://voice.example.test/twilio/media/{token}',
      actionUrl: 'https://voice.example.test/twilio/connect-action',
      parameters: ['wsToken', 'tenant'],
    });
    // The validator is real: another token's signatures do not pass.
    await call('some-other-token');
    expect(engine.webhooks[1]!.signatureValid).toBe(false);
    expect(engine.upgrades[1]!.signatureValid).toBe(false);
  });

  test('says clearly when the engine answers with ConversationRelay or no stream at all', async () => {
    engine = await startFakeEngine({
      twiml: () =>
        '<Response><Connect><ConversationRelay url="wss://x.example/twilio/relay/t"/></Connect></Response>',
    });
    const options = { url: engine.url, to: '+15550100100', from: '+15555550123', steps: [] };
    await expect(runMediaCall(options)).rejects.toMatchObject({
      code: 'ERR_NOT_MEDIA_STREAMS',
      message: expect.stringMatching(/STT_PROVIDER and TTS_PROVIDER/) as string,
    });
    await engine.close();
    engine = await startFakeEngine({
      twiml: () => '<Response><Say>Sorry, this number is not in service.</Say><Hangup/></Response>',
    });
    await expect(runMediaCall({ ...options, url: engine.url })).rejects.toMatchObject({
      code: 'ERR_TWIML_UNEXPECTED',
    });
  });

  test('the real engine without its own speech path answers ConversationRelay, and the client says so', async () => {
    const app = await startTestApp();
    try {
      await expect(
        runMediaCall({ url: app.server.url, to: '+15550100100', from: '+15555550123', steps: [] }),
      ).rejects.toMatchObject({ code: 'ERR_NOT_MEDIA_STREAMS' });
    } finally {
      await app.stop();
    }
  });

  test('an engine that closes the stream (a transfer) ends the call: no more steps, no stop', async () => {
    engine = await startFakeEngine({
      script: {
        onSpeechEnd(s) {
          s.sendAudio(100);
          setTimeout(() => s.close(1000, 'transfer'), 150);
        },
      },
    });
    const { report } = await runMediaCall({
      url: engine.url,
      to: '+15550100100',
      from: '+15555550123',
      steps: [say(200), say(200)],
      replyQuietMs: 300,
      replyTimeoutMs: 500,
    });
    expect(report.end).toMatchObject({ by: 'engine', code: 1000, reason: 'transfer' });
    expect(report.turns).toHaveLength(1);
    expect(report.greeting.timedOut).toBe(true);
    expect(engine.streams[0]!.received.some((r) => r.msg['event'] === 'stop')).toBe(false);
  });

  test('DTMF goes out in script order; frames Twilio would refuse are reported and the call goes on', async () => {
    engine = await startFakeEngine({
      script: {
        onStart(s) {
          s.send('not json');
          s.send({ event: 'media', streamSid: 'MZ-someone-else', media: { payload: 'AAAA' } });
          s.send({ event: 'media', streamSid: s.streamSid, media: { payload: 'AAAA', track: 'outbound' } });
          s.send({ event: 'transcript', streamSid: s.streamSid });
          s.send({ event: 'mark', streamSid: s.streamSid, mark: {} });
          s.sendBinary();
          s.sendAudio(100);
        },
      },
    });
    const { report } = await runMediaCall({
      url: engine.url,
      to: '+15550100100',
      from: '+15555550123',
      steps: [{ kind: 'dtmf', digit: '0' }, say(200)],
      replyQuietMs: 200,
      replyTimeoutMs: 300,
      dtmfReplyWaitMs: 200,
    });
    const { received } = engine.streams[0]!;
    const dtmfIndex = received.findIndex((r) => r.msg['event'] === 'dtmf');
    const dtmf = received[dtmfIndex]!.msg;
    expect(dtmf).toEqual({
      event: 'dtmf',
      streamSid: report.streamSid,
      sequenceNumber: String(Number(received[dtmfIndex - 1]!.msg['sequenceNumber']) + 1),
      dtmf: { track: 'inbound_track', digit: '0' },
    });
    const firstVoiced = received.indexOf(voicedFrames(received)[0]!);
    expect(dtmfIndex).toBeLessThan(firstVoiced);
    expect(report.turns.map((t) => t.sent)).toEqual([
      { kind: 'dtmf', label: '0', audioMs: null },
      { kind: 'audio', label: 'tone-200ms', audioMs: 200 },
    ]);
    expect(report.turns.map((t) => t.timedOut)).toEqual([true, true]);
    expect(report.problems.map((p) => p.reason).sort()).toEqual(
      [
        'binary frame (Twilio takes text frames only: error 31950)',
        'mark without a name',
        'media for another streamSid (Twilio error 31951)',
        'not JSON',
        'outbound media may hold only payload (Twilio error 31951)',
        'unknown event "transcript" (Twilio error 31924)',
      ].sort(),
    );
    expect(report.greeting.replyAudioMs).toBe(100);
    expect(report.end.by).toBe('caller');
  });
});

// ---------------------------------------------------------------------------------------------------

describe('npm run call -- --media', { timeout: 20_000 }, () => {
  const cli = path.resolve('src/cli/call.ts');
  const dir = mkdtemp(path.join(tmpdir(), 'switchboard-media-call-'));
  afterAll(async () => rm(await dir, { recursive: true, force: true }));
  const hasEspeak = spawnSync('espeak-ng', ['--version']).status === 0;

  function run(args: string[], env: Record<string, string> = {}) {
    return runNode(cli, args, { env: { PATH: process.env['PATH'] ?? '', LOG_LEVEL: 'silent', ...env } });
  }

  const replyingEngine = () =>
    startFakeEngine({
      script: {
        onStart: (s) => s.sendAudio(200),
        onDtmf: (s) => s.sendAudio(100),
        onSpeechEnd(s) {
          s.send({ event: 'switchboard.turn', streamSid: s.streamSid, trace: TURN_TRACE });
          s.sendAudio(300);
          s.sendMark('reply');
        },
      },
    });

  test('--json prints one report; --save-audio writes what the caller heard as an 8 kHz WAV', async () => {
    engine = await replyingEngine();
    const wavPath = path.join(await dir, 'hours.wav');
    const outPath = path.join(await dir, 'heard.wav');
    // A 44.1 kHz recording, resampled by the client.
    await writeFile(wavPath, pcm16ToWav(tone(600, 12_000, 22_050, 44_100), 44_100));
    const { code, stdout, stderr } = await run([
      '--media',
      '--url',
      engine.url,
      '--wav',
      wavPath,
      '--json',
      '--save-audio',
      outPath,
    ]);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const report = JSON.parse(stdout) as Json;
    expect(Object.keys(report).sort()).toEqual(
      [
        'actionUrl',
        'callSid',
        'end',
        'greeting',
        'parameters',
        'problems',
        'streamSid',
        'streamUrl',
        'totals',
        'turns',
      ].sort(),
    );
    const turns = report['turns'] as Json[];
    expect(turns).toHaveLength(1);
    expect(turns[0]).toMatchObject({
      index: 1,
      sent: { kind: 'wav', label: 'hours.wav', audioMs: 500 },
      transcript: 'what are your hours',
      reply: 'We open at eight.',
      replyAudioMs: 300,
      marksEchoed: 1,
    });
    for (const key of ['speechStartAtMs', 'speechEndAtMs', 'firstAudioAtMs', 'responseMs'])
      expect(typeof turns[0]![key]).toBe('number');
    const heard = readWav(await readFile(outPath));
    expect(heard.sampleRateHz).toBe(8000);
    const heardMs = heard.samples.filter((s) => s !== 0).length / 8; // the greeting and the reply
    expect(heardMs).toBeGreaterThan(480);
    expect(heardMs).toBeLessThanOrEqual(500);
  });

  test('prints readable turns in script order, --dtmf included', async () => {
    engine = await replyingEngine();
    const wavPath = path.join(await dir, 'short.wav');
    await writeFile(wavPath, pcm16ToWav(tone(600, 12_000, 3_200, 16_000), 16_000));
    const { code, stdout } = await run(['--media', '--url', engine.url, '--dtmf', '5', '--wav', wavPath]);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^greeting › first audio \d+ ms after the stream started · 0\.20 s of audio/);
    expect(stdout).toMatch(/#1 dtmf › 5\n[\s\S]*#2 caller › short\.wav \(0\.20 s of audio; speech at/);
    expect(stdout).toContain('   heard › what are your hours');
    expect(stdout).toContain('   agent › We open at eight.');
    expect(stdout).toMatch(/tier 1 \(0\.91\) · hours\/hours-open/);
    expect(stdout).toMatch(/speech end → first audio \d+ ms · engine turn 12 ms/);
    expect(stdout).toMatch(/stages ms: capture 3\.00 · detect 1\.50 · tier1 0\.40 · provider 0\.00/);
    expect(stdout).toContain('call ended: the caller hung up');
    const frames = engine.streams[0]!.received.map((r) => r.msg['event']);
    expect(frames.indexOf('dtmf')).toBeGreaterThan(1);
  });

  test('usage errors exit 2; --say without espeak-ng says what to install', async () => {
    const usage = await run(['--media']);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/--media needs at least one --wav, --say or --dtmf/);
    expect((await run(['--media', '--dtmf', '12'])).stderr).toMatch(/--dtmf takes one key/);
    expect((await run(['--wav', 'x.wav'])).stderr).toMatch(/need --media/);
    const missing = await run(['--media', '--say', 'hello'], { PATH: '/nonexistent' });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/espeak-ng.*apt-get install espeak-ng.*--wav/s);
    const bad = path.join(await dir, 'bad.wav');
    await writeFile(bad, 'ID3 not a wav file at all');
    const badWav = await run(['--media', '--wav', bad]);
    expect(badWav.code).toBe(1);
    expect(badWav.stderr).toMatch(/bad\.wav: not a usable WAV file: no RIFF\/WAVE header/);
    const gone = await run(['--media', '--wav', path.join(await dir, 'gone.wav')]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toBe(
      `call failed: ${path.join(await dir, 'gone.wav')}: cannot read it (no such file)\n`,
    );
  });

  test('--save-audio into a folder that is not there is refused before the call, not after it', async () => {
    engine = await replyingEngine();
    const wavPath = path.join(await dir, 'early.wav');
    await writeFile(wavPath, pcm16ToWav(tone(600, 12_000, 3_200, 16_000), 16_000));
    const nowhere = path.join(await dir, 'no-such-folder', 'heard.wav');
    const refused = await run(['--media', '--url', engine.url, '--wav', wavPath, '--save-audio', nowhere]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(`--save-audio: the folder ${path.dirname(nowhere)} does not exist`);
    expect(engine.streams).toHaveLength(0);
    const notFolder = await run([
      '--media',
      '--url',
      engine.url,
      '--wav',
      wavPath,
      '--save-audio',
      `${wavPath}/heard.wav`,
    ]);
    expect(notFolder.code).toBe(2);
    expect(notFolder.stderr).toContain(`--save-audio: ${wavPath} is not a folder`);
    expect(engine.streams).toHaveLength(0);
  });

  test('under npm run, --wav and --save-audio are relative to the folder the command was typed in', async () => {
    engine = await replyingEngine();
    const typedIn = await mkdtemp(path.join(await dir, 'sub-'));
    await writeFile(path.join(typedIn, 'here.wav'), pcm16ToWav(tone(600, 12_000, 3_200, 16_000), 16_000));
    // What npm sets for `npm run call` typed in `typedIn`: the script runs in the package root.
    const { code, stdout, stderr } = await runNode(
      cli,
      ['--media', '--url', engine.url, '--wav', 'here.wav', '--save-audio', 'heard.wav'],
      {
        cwd: path.resolve('.'),
        env: {
          PATH: process.env['PATH'] ?? '',
          LOG_LEVEL: 'silent',
          INIT_CWD: typedIn,
          npm_package_json: path.resolve('package.json'),
        },
      },
    );
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout).toContain('#1 caller › here.wav');
    expect(stdout).toContain(`what the caller heard: ${path.join(typedIn, 'heard.wav')}`);
    expect(readWav(await readFile(path.join(typedIn, 'heard.wav'))).sampleRateHz).toBe(8000);
  });

  test('an engine that is not there: says which address it tried and how to start one, in both modes', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise((resolve) => closed.close(resolve));
    const wavPath = path.join(await dir, 'nobody.wav');
    await writeFile(wavPath, pcm16ToWav(tone(600, 12_000, 1_600, 8_000), 8_000));
    const url = `http://127.0.0.1:${port}`;
    for (const args of [
      ['--media', '--url', url, '--wav', wavPath],
      ['--url', url, '--say', 'hello'],
    ]) {
      const { code, stdout, stderr } = await run(args);
      expect(code).toBe(1);
      expect(stdout).toBe('');
      expect(stderr).toBe(
        `call failed: cannot reach the engine at ${url}/twilio/voice (ECONNREFUSED): is it running (npm start)? --url points elsewhere\n`,
      );
    }
  });

  test('an engine that checks signatures: a refused webhook says how to make the client sign', async () => {
    const app = await startTestApp({ env: { TWILIO_AUTH_TOKEN: 'engine-token' } });
    try {
      const unsigned = await run(['--url', app.server.url, '--say', 'hello']);
      expect(unsigned.code).toBe(1);
      expect(unsigned.stderr).toContain('webhook answered HTTP 403');
      expect(unsigned.stderr).toContain(
        "the engine checks Twilio signatures: run the client with the engine's TWILIO_AUTH_TOKEN and PUBLIC_BASE_URL so it signs",
      );
      const wrong = await run(['--url', app.server.url, '--say', 'hello'], { TWILIO_AUTH_TOKEN: 'not-it' });
      expect(wrong.code).toBe(1);
      expect(wrong.stderr).toContain(
        `signed for ${app.server.url}/twilio/voice: give the client the engine's own TWILIO_AUTH_TOKEN and PUBLIC_BASE_URL`,
      );
      const signed = await run(['--url', app.server.url, '--say', 'hello', '--json'], {
        TWILIO_AUTH_TOKEN: 'engine-token',
      });
      expect(signed.stderr).toBe('');
      expect(signed.code).toBe(0);
    } finally {
      await app.stop();
    }
  });

  test.skipIf(!hasEspeak)('--say synthesizes the utterance with espeak-ng', async () => {
    engine = await replyingEngine();
    const { code, stdout } = await run([
      '--media',
      '--url',
      engine.url,
      '--say',
      'What are your hours?',
      '--json',
    ]);
    expect(code).toBe(0);
    const turn = (JSON.parse(stdout) as { turns: Json[] }).turns[0]!;
    expect(turn['sent']).toMatchObject({ kind: 'say', label: 'What are your hours?' });
    expect(turn['replyAudioMs']).toBe(300);
    expect(voicedFrames(engine.streams[0]!.received).length).toBeGreaterThan(20);
  });
});
