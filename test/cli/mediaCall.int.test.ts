/**
 * The test client's audio mode end to end: `runMediaCall` and `npm run call -- --media` against the
 * real engine, started with the environment `npm run fakes` prints (its fakes on ports the system
 * picks). WAV files go through the client's resampler and VAD, the stream runs in real time, and a
 * tap between the client and the engine records every frame Twilio's side sent.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { pcm16ToWav } from '../../src/audio/wav.ts';
import { readWav } from '../../src/audio/wavRead.ts';
import type { MediaCallReport, MediaCallStep } from '../../src/cli/mediaCall.ts';
import { loadWavUtterance, runMediaCall } from '../../src/cli/mediaCall.ts';
import type { Utterance } from '../../src/cli/twilioStreamSimulator.ts';
import { TRACE_HEADER } from '../../src/twilio/relayProtocol.ts';
import type { DevFakes } from '../fakes/serveFakes.ts';
import { startDevFakes } from '../fakes/serveFakes.ts';
import { runNode } from '../support/runNode.ts';
import { demoCompany, demoTemplate, startTestApp } from '../support/testApp.ts';
import type { TestApp } from '../support/testApp.ts';

const DEMO = '+15550100100';
const CALLER = '+15555550123';
const ASK_PRICE = 'How much do you charge to come out?';
const BYE = 'Thanks, bye';
/** The fake transcriber's end of an utterance: this much silence after the speech. */
const SILENCE_MS = 200;
/** Short speech tones keep the real-time calls short; the barge-in test lengthens its replies. */
const MS_PER_CHAR = 10;

// ---------------------------------------------------------------------------------------------------
// Caller audio

/**
 * A voice-like signal: a 120→160 Hz glide with five harmonics, syllable-rate amplitude modulation
 * and 30 ms fades, after 100 ms of silence and followed by `trailingMs` of it.
 */
function speechLike(voicedMs: number, rateHz: number, trailingMs = 300): Int16Array {
  const lead = Math.round(0.1 * rateHz);
  const voiced = Math.round((voicedMs / 1000) * rateHz);
  const out = new Int16Array(lead + voiced + Math.round((trailingMs / 1000) * rateHz));
  const fade = 0.03 * rateHz;
  const harmonics = [1, 0.6, 0.4, 0.25, 0.15];
  let phase = 0;
  for (let i = 0; i < voiced; i++) {
    const t = i / rateHz;
    phase += (2 * Math.PI * (120 + (40 * i) / voiced)) / rateHz;
    let sample = 0;
    for (const [h, a] of harmonics.entries()) sample += a * Math.sin((h + 1) * phase);
    const syllables = 0.65 + 0.35 * Math.sin(2 * Math.PI * 4 * t);
    const edge = Math.min(1, i / fade, (voiced - i) / fade);
    out[lead + i] = Math.round(5000 * sample * syllables * edge);
  }
  return out;
}

let dir = '';
const files = { ask: '', bye: '' };
const utterances: { ask?: Utterance; bye?: Utterance } = {};

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'switchboard-media-int-'));
  files.ask = path.join(dir, 'ask-price-16k.wav');
  files.bye = path.join(dir, 'bye-44k.wav');
  await writeFile(files.ask, pcm16ToWav(speechLike(900, 16_000), 16_000));
  await writeFile(files.bye, pcm16ToWav(speechLike(600, 44_100), 44_100));
  utterances.ask = await loadWavUtterance(files.ask);
  utterances.bye = await loadWavUtterance(files.bye);
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

// ---------------------------------------------------------------------------------------------------
// The engine, its fakes, and a tap on the stream

interface TappedFrame {
  readonly atMs: number;
  readonly msg: Record<string, unknown>;
}

interface Tap {
  readonly url: string;
  /** What the client sent on the stream socket, in order. */
  readonly frames: TappedFrame[];
  /** What the engine sent, in order. */
  readonly received: TappedFrame[];
  close(): Promise<void>;
}

/** Close codes a peer may send on (1005 and 1006 only describe a close). */
const sendable = (code: number) => (code === 1005 || code === 1006 ? 1000 : code);

/** An HTTP and WebSocket pass-through to `target` that records the client's stream frames. */
async function startTap(target: string): Promise<Tap> {
  const frames: TappedFrame[] = [];
  const received: TappedFrame[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void fetch(new URL(req.url ?? '/', target), {
        method: req.method ?? 'GET',
        headers: { 'content-type': req.headers['content-type'] ?? 'text/plain' },
        ...(req.method === 'POST' ? { body: Buffer.concat(chunks) } : {}),
      })
        .then(async (upstream) => {
          res.writeHead(upstream.status, { 'content-type': upstream.headers.get('content-type') ?? '' });
          res.end(Buffer.from(await upstream.arrayBuffer()));
        })
        .catch(() => res.writeHead(502).end());
    });
  });
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  server.on('upgrade', (req, socket, head) => {
    const trace = req.headers[TRACE_HEADER];
    const upstream = new WebSocket(new URL(req.url ?? '/', target.replace(/^http/, 'ws')), {
      headers: typeof trace === 'string' ? { [TRACE_HEADER]: trace } : {},
      perMessageDeflate: false,
    });
    upstream.once('unexpected-response', (_r, res) => {
      socket.end(`HTTP/1.1 ${res.statusCode ?? 502} Refused\r\nConnection: close\r\n\r\n`);
    });
    upstream.once('open', () =>
      wss.handleUpgrade(req, socket, head, (client) => {
        client.on('message', (data) => {
          const text = (data as Buffer).toString('utf8');
          frames.push({ atMs: performance.now(), msg: JSON.parse(text) as Record<string, unknown> });
          upstream.send(text);
        });
        upstream.on('message', (data) => {
          const text = (data as Buffer).toString('utf8');
          received.push({ atMs: performance.now(), msg: JSON.parse(text) as Record<string, unknown> });
          client.send(text);
        });
        client.on('close', (code, reason) => upstream.close(sendable(code), reason));
        upstream.on('close', (code, reason) => client.close(sendable(code), reason));
      }),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    frames,
    received,
    close: async () => {
      for (const client of wss.clients) client.terminate();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

let fakes: DevFakes | null = null;
let app: TestApp | null = null;
let tap: Tap | null = null;

afterEach(async () => {
  await tap?.close();
  await app?.stop();
  await fakes?.close();
  tap = app = fakes = null;
});

async function startEngine(
  transcripts: string[],
  msPerChar = MS_PER_CHAR,
  stt: 'realtime' | 'transcriptions' = 'realtime',
): Promise<string> {
  fakes = await startDevFakes({
    portBase: 0,
    transcripts,
    silenceMs: SILENCE_MS,
    speechMsPerChar: msPerChar,
  });
  app = await startTestApp({ env: { ...(stt === 'realtime' ? fakes.env : fakes.transcriptionsEnv) } });
  tap = await startTap(app.server.url);
  return tap.url;
}

async function replyOf(scenarioId: string): Promise<string> {
  const template = (await demoTemplate()) as {
    categories: Array<{ scenarios: Array<{ id: string; replies: string[] }> }>;
  };
  const scenario = template.categories.flatMap((c) => c.scenarios).find((s) => s.id === scenarioId);
  return scenario!.replies[0]!;
}

const wavStep = (utterance: Utterance | undefined): MediaCallStep => ({
  kind: 'utterance',
  utterance: utterance!,
});

/** The tapped media frames' payloads, decoded, in order: the μ-law Twilio's side sent. */
function sentAudio(frames: readonly TappedFrame[]): Buffer {
  return Buffer.concat(
    frames
      .filter((f) => f.msg['event'] === 'media')
      .map((f) => Buffer.from((f.msg['media'] as { payload: string }).payload, 'base64')),
  );
}

// ---------------------------------------------------------------------------------------------------

describe('npm run call -- --media against the real engine', { timeout: 40_000 }, () => {
  test('greets, hears two WAV utterances (16 and 44.1 kHz) in real time, answers each and reports it all', async () => {
    const url = await startEngine([ASK_PRICE, BYE]);
    const company = await demoCompany();
    const started = performance.now();
    const { report, playedAudio } = await runMediaCall({
      url,
      to: DEMO,
      from: CALLER,
      steps: [wavStep(utterances.ask), wavStep(utterances.bye)],
      keepPlayedAudio: true,
    });
    const wallMs = performance.now() - started;

    // The greeting, from the stream's start.
    expect(report.greeting.heard).toEqual([{ turn: 0, heard: company['greeting'], interrupted: false }]);
    expect(report.greeting.firstAudioAtMs).toBeGreaterThan(0);
    expect(report.greeting.replyAudioMs).toBeGreaterThan(
      String(company['greeting']).length * MS_PER_CHAR - 40,
    );
    expect(report.greeting.marksEchoed).toBeGreaterThanOrEqual(1);

    // Two turns, each with what the engine heard and answered (its trace frames).
    expect(report.turns).toHaveLength(2);
    const [ask, bye] = report.turns as [MediaCallReport['turns'][number], MediaCallReport['turns'][number]];
    expect(ask).toMatchObject({
      index: 1,
      sent: { kind: 'wav', label: 'ask-price-16k.wav', audioMs: utterances.ask!.durationMs },
      transcript: ASK_PRICE,
      reply: await replyOf('pricing-service-call'),
      timedOut: false,
      bargeIn: null,
      clears: 0,
    });
    expect(ask.engine?.record).toMatchObject({ tier: 2, scenarioId: 'pricing-service-call' });
    expect(bye).toMatchObject({
      index: 2,
      sent: { kind: 'wav', label: 'bye-44k.wav', audioMs: utterances.bye!.durationMs },
      transcript: BYE,
      reply: await replyOf('goodbye-thanks'),
      timedOut: false,
    });
    expect(bye.engine?.record).toMatchObject({ tier: 1, scenarioId: 'goodbye-thanks' });
    // Resampled to 8 kHz whatever the file's rate: the voice is where the WAV has it, 100 ms in.
    expect(utterances.ask!.durationMs).toBe(1_300);
    expect(utterances.bye!.durationMs).toBe(1_000);
    for (const [turn, voicedMs] of [
      [ask, 900],
      [bye, 600],
    ] as const) {
      expect(turn.speechStartAtMs! - turn.startedAtMs).toBeGreaterThanOrEqual(80);
      expect(turn.speechStartAtMs! - turn.startedAtMs).toBeLessThanOrEqual(160);
      expect(Math.abs(turn.speechEndAtMs! - turn.speechStartAtMs! - voicedMs)).toBeLessThan(80);
      // Speech end → first audio includes the transcriber's wait for silence, and not much more.
      expect(turn.responseMs).toBeGreaterThanOrEqual(SILENCE_MS - 40);
      expect(turn.responseMs).toBeLessThan(2_000);
      expect(turn.audio?.timings['speechStoppedToFirstAudioMs']).toBeGreaterThan(0);
      expect(turn.replyAudioMs).toBeGreaterThan(turn.reply!.length * MS_PER_CHAR - 40);
      expect(turn.marksEchoed).toBeGreaterThanOrEqual(1);
      expect(turn.heard).toEqual([{ turn: turn.index, heard: turn.reply, interrupted: false }]);
    }

    // The goodbye ends the call from the engine's side; every mark was echoed, nothing cleared.
    expect(report.end).toMatchObject({ by: 'engine', code: 1000 });
    expect(report.totals.marksEchoed).toBe(report.greeting.marksEchoed + ask.marksEchoed + bye.marksEchoed);
    expect(report.totals.clears).toBe(0);
    expect(report.problems).toEqual([]);

    // Twilio's frames, as the tap saw them: connected, start, then numbered frames 1, 2, 3, … and
    // media chunks 1, 2, 3, … stamped 0, 20, 40, … ms.
    const frames = tap!.frames;
    expect(frames[0]!.msg).toEqual({ event: 'connected', protocol: 'Call', version: '1.0.0' });
    expect(frames[1]!.msg).toMatchObject({ event: 'start', sequenceNumber: '1' });
    expect(frames.slice(1).map((f) => f.msg['sequenceNumber'])).toEqual(
      frames.slice(1).map((_f, i) => String(i + 1)),
    );
    const media = frames.filter((f) => f.msg['event'] === 'media');
    expect(media).toHaveLength(report.totals.framesSent);
    media.forEach((f, i) => {
      expect(f.msg['media']).toMatchObject({
        track: 'inbound',
        chunk: String(i + 1),
        timestamp: String(i * 20),
      });
    });
    // In real time: the frames span the call at 20 ms each, none far off that schedule (the client,
    // the tap and the engine share one event loop, so allow some jitter either way).
    const offsets = media.map((f, i) => f.atMs - i * 20).sort((a, b) => a - b);
    const median = offsets[offsets.length >> 1]!;
    expect(offsets[0]! - median).toBeGreaterThan(-100);
    expect(offsets.at(-1)! - median).toBeLessThan(200);
    const spanMs = media.at(-1)!.atMs - media[0]!.atMs;
    expect(Math.abs(spanMs - (media.length - 1) * 20)).toBeLessThan(100);
    expect(report.totals.framesSent * 20).toBeGreaterThan(report.end.atMs - 100);
    expect(report.totals.framesSent * 20).toBeLessThan(wallMs);
    // Every mark the engine sent came back by name, after it.
    const markName = (f: TappedFrame) => (f.msg['mark'] as { name: string }).name;
    const sentMarks = tap!.received.filter((f) => f.msg['event'] === 'mark');
    const echoes = frames.filter((f) => f.msg['event'] === 'mark');
    expect(echoes).toHaveLength(report.totals.marksEchoed);
    expect(echoes.map(markName)).toEqual(sentMarks.map(markName));
    echoes.forEach((echo, i) => expect(echo.atMs).toBeGreaterThanOrEqual(sentMarks[i]!.atMs));

    // The engine forwarded the stream to the transcriber in batches (two frames per append, five
    // once the caller had been quiet for 1.5 s), and both utterances in it byte for byte, in order.
    const stt = fakes!.stt.connections[0]!;
    const framesForwarded = stt.audioBytes / 160;
    expect(framesForwarded).toBeGreaterThan(report.totals.framesSent - 10);
    expect(framesForwarded).toBeLessThanOrEqual(report.totals.framesSent);
    // A frame late by more than its hold limit (the test shares one event loop) goes alone.
    expect(stt.appends.length).toBeGreaterThanOrEqual(Math.ceil(framesForwarded / 5));
    expect(stt.appends.length).toBeLessThan(framesForwarded * 0.75);
    const transcribed = Buffer.concat(stt.appends.map((a) => Buffer.from(a, 'base64')));
    const askAt = transcribed.indexOf(utterances.ask!.mulaw);
    expect(askAt).toBeGreaterThan(0);
    expect(transcribed.indexOf(utterances.bye!.mulaw, askAt)).toBeGreaterThan(askAt);
    // Whole frames, contiguous; the last few may have been in flight when the engine hung up.
    const offset = sentAudio(frames).indexOf(transcribed);
    expect(offset).toBeGreaterThanOrEqual(0);
    expect(offset % 160).toBe(0);
    expect(offset).toBeLessThanOrEqual(10 * 160);

    // What the caller heard: 8 kHz from the stream's start to the end, the engine's audio in it.
    expect(playedAudio).not.toBeNull();
    expect(playedAudio!.length / 8).toBeGreaterThan(report.end.atMs - 100);
    const audibleMs = playedAudio!.filter((s) => s !== 0).length / 8;
    expect(audibleMs).toBeGreaterThan(report.totals.audioReceivedMs * 0.95);
    expect(audibleMs).toBeLessThanOrEqual(report.totals.audioReceivedMs);
  });

  test('the other STT mode, as `npm run fakes` prints it: utterances cut by the engine and posted as WAVs', async () => {
    const url = await startEngine([ASK_PRICE, BYE], MS_PER_CHAR, 'transcriptions');
    const { report } = await runMediaCall({
      url,
      to: DEMO,
      from: CALLER,
      steps: [wavStep(utterances.ask), wavStep(utterances.bye)],
    });
    expect(report.turns.map((t) => [t.transcript, t.reply])).toEqual([
      [ASK_PRICE, await replyOf('pricing-service-call')],
      [BYE, await replyOf('goodbye-thanks')],
    ]);
    expect(report.end?.by).toBe('engine');
    // Each utterance reached the fake whisper server as one 8 kHz WAV, as long as its voice or longer.
    const posted = fakes!.tts.transcriptionRequests;
    expect(posted).toHaveLength(2);
    for (const [request, voicedMs] of [
      [posted[0]!, 900],
      [posted[1]!, 600],
    ] as const) {
      expect(request.wav?.sampleRate).toBe(8000);
      expect((request.wav!.samples.length / 8000) * 1000).toBeGreaterThanOrEqual(voicedMs - 80);
    }
    expect(fakes!.stt.connections).toHaveLength(0);
  });

  test('--barge-in-after-ms: the next utterance starts into a long reply, the engine clears it and the report says so', async () => {
    // 25 ms a character: the price reply plays for about 2.3 s, far longer than the barge-in needs.
    const url = await startEngine([ASK_PRICE, BYE], 25);
    const { report } = await runMediaCall({
      url,
      to: DEMO,
      from: CALLER,
      steps: [wavStep(utterances.ask), wavStep(utterances.bye)],
      bargeInAfterMs: 200,
    });
    const [ask, bye] = report.turns as [MediaCallReport['turns'][number], MediaCallReport['turns'][number]];
    expect(ask.transcript).toBe(ASK_PRICE);
    expect(ask.replyAudioMs).toBeGreaterThan(2_000);
    // The second utterance began 200 ms into the first reply, which was still playing.
    expect(bye.bargeIn?.afterReplyAudioMs).toBeGreaterThanOrEqual(200);
    expect(bye.bargeIn?.afterReplyAudioMs).toBeLessThan(400);
    // The engine cleared the reply once it heard the caller: after the speech began, not before.
    expect(bye.clears).toBeGreaterThanOrEqual(1);
    expect(bye.clearAfterSpeechStartMs).toBeGreaterThanOrEqual(0);
    expect(bye.clearAfterSpeechStartMs).toBeLessThan(1_000);
    expect(report.totals.clears).toBe(bye.clears);
    expect(tap!.received.filter((f) => f.msg['event'] === 'clear')).toHaveLength(bye.clears);
    // The cut reply was not heard; the barge-in was understood and answered.
    expect(bye.heard).toContainEqual({ turn: 1, heard: '', interrupted: true });
    expect(bye).toMatchObject({ transcript: BYE, reply: await replyOf('goodbye-thanks'), timedOut: false });
    expect(bye.heard).toContainEqual({ turn: 2, heard: bye.reply, interrupted: false });
    expect(report.end.by).toBe('engine');
  });

  test('the command line: --wav … --json --save-audio prints one JSON report and writes what the caller heard', async () => {
    const url = await startEngine([BYE]);
    const out = path.join(dir, 'heard.wav');
    const cli = path.resolve('src/cli/call.ts');
    const { code, stdout, stderr } = await runNode(
      cli,
      ['--media', '--wav', files.bye, '--json', '--save-audio', out, '--url', url],
      { env: { PATH: process.env['PATH'] ?? '', LOG_LEVEL: 'silent' } },
    );
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const report = JSON.parse(stdout) as MediaCallReport;
    expect(report.greeting.heard[0]).toMatchObject({ turn: 0, interrupted: false });
    expect(report.turns).toHaveLength(1);
    expect(report.turns[0]).toMatchObject({
      sent: { kind: 'wav', label: 'bye-44k.wav' },
      transcript: BYE,
      reply: await replyOf('goodbye-thanks'),
      timedOut: false,
    });
    expect(report.turns[0]!.responseMs).toBeGreaterThan(0);
    expect(report.end).toMatchObject({ by: 'engine', code: 1000 });

    const heard = readWav(await readFile(out));
    expect(heard.sampleRateHz).toBe(8000);
    expect(heard.samples.length / 8).toBeGreaterThan(report.end.atMs - 100);
    expect(heard.samples.length / 8).toBeLessThan(report.end.atMs + 100);
    const audibleMs = heard.samples.filter((s) => s !== 0).length / 8;
    expect(audibleMs).toBeGreaterThan(report.totals.audioReceivedMs * 0.95);
    expect(audibleMs).toBeLessThanOrEqual(report.totals.audioReceivedMs);
  });
});
