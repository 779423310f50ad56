/**
 * Media Streams lifecycle against the real server: a thousand calls leave no actor, socket or timer
 * behind, and malformed frames from a fuzzer close the offending socket without hurting the process
 * or the next call.
 */
import { waitFor } from '../support/waitFor.ts';
import { request } from 'node:http';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { WebSocket } from 'ws';
import { MULAW_SILENCE } from '../../src/audio/mulaw.ts';
import { heldBatches, openBatchers } from '../../src/providers/stt/frameBatcher.ts';
import { startFakeAudioServer } from '../fakes/fakeAudioServer.ts';
import type { FakeAudioServer } from '../fakes/fakeAudioServer.ts';
import { startFakeRealtimeServer } from '../fakes/fakeRealtimeServer.ts';
import type { FakeRealtimeServer } from '../fakes/fakeRealtimeServer.ts';
import { startTestApp } from '../support/testApp.ts';
import type { TestApp } from '../support/testApp.ts';

const DEMO = '+15550100100';
const ACCOUNT_SID = `AC${'1'.repeat(32)}`;
const SILENCE = Buffer.alloc(160, MULAW_SILENCE).toString('base64');

let app: TestApp;
let stt: FakeRealtimeServer;
let tts: FakeAudioServer;

beforeAll(async () => {
  stt = await startFakeRealtimeServer({ apiKey: 'sk-test' });
  tts = await startFakeAudioServer();
  app = await startTestApp({
    env: {
      STT_PROVIDER: 'openai-realtime',
      STT_API_KEY: 'sk-test',
      STT_BASE_URL: stt.baseURL,
      TTS_PROVIDER: 'openai',
      TTS_API_KEY: 'sk-test',
      TTS_BASE_URL: tts.baseURL,
    },
    app: { media: { startTimeoutMs: 1000, heartbeatMs: 60_000 } },
  });
});

afterAll(async () => {
  await app.stop();
  await stt.close();
  await tts.close();
});

/** The webhook without a keep-alive agent, so no client socket outlives the request. */
function webhook(callSid: string): Promise<string> {
  const body = new URLSearchParams({
    CallSid: callSid,
    AccountSid: ACCOUNT_SID,
    From: '+15555550123',
    To: DEMO,
  });
  return new Promise((resolve, reject) => {
    const req = request(
      `${app.server.url}/twilio/voice`,
      { method: 'POST', agent: false, headers: { 'content-type': 'application/x-www-form-urlencoded' } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => resolve(text));
      },
    );
    req.on('error', reject);
    req.end(body.toString());
  });
}

interface Stream {
  readonly ws: WebSocket;
  readonly streamSid: string;
  readonly callSid: string;
  readonly closed: Promise<{ code: number; reason: string }>;
  send(frame: Record<string, unknown>): void;
}

async function openStream(): Promise<Stream> {
  const callSid = `CA${randomBytes(16).toString('hex')}`;
  const streamSid = `MZ${randomBytes(16).toString('hex')}`;
  const twiml = await webhook(callSid);
  const url = /<Stream url="([^"]+)"/.exec(twiml)![1]!;
  const token = /<Parameter name="token" value="([^"]+)"\/>/.exec(twiml)![1]!;
  const ws = new WebSocket(url, { perMessageDeflate: false });
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })),
  );
  let seq = 0;
  ws.on('message', (data) => {
    const frame = JSON.parse((data as Buffer).toString('utf8')) as { event: string; mark?: unknown };
    // Play instantly: echo marks so replies finish.
    if (frame.event === 'mark' && ws.readyState === WebSocket.OPEN)
      ws.send(JSON.stringify({ event: 'mark', sequenceNumber: String(++seq), streamSid, mark: frame.mark }));
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const stream: Stream = {
    ws,
    streamSid,
    callSid,
    closed,
    send(frame) {
      if (ws.readyState === WebSocket.OPEN)
        ws.send(JSON.stringify({ sequenceNumber: String(++seq), streamSid, ...frame }));
    },
  };
  ws.send(JSON.stringify({ event: 'connected', protocol: 'Call', version: '1.0.0' }));
  stream.send({
    event: 'start',
    start: {
      accountSid: ACCOUNT_SID,
      streamSid,
      callSid,
      tracks: ['inbound'],
      customParameters: { company: 'riverside-plumbing', token },
      mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
    },
  });
  return stream;
}

function resourceCounts(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo()) counts[r] = (counts[r] ?? 0) + 1;
  return counts;
}

describe('Media Streams lifecycle', () => {
  test('1,000 calls (start, audio, stop) leave no live call, STT socket, timer or socket behind', async () => {
    // One call first, so lazily created resources (agents, pools) exist in the baseline.
    const warm = await openStream();
    warm.send({ event: 'stop', stop: { accountSid: ACCOUNT_SID, callSid: warm.callSid } });
    await warm.closed;
    await waitFor(() => app.engine.liveCalls === 0, 10_000);
    await waitFor(() => stt.connections.every((c) => c.closed !== null), 10_000);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const before = resourceCounts();
    const connectionsBefore = stt.connections.length;

    const CALLS = 1000;
    const BATCH = 50;
    for (let done = 0; done < CALLS; done += BATCH) {
      const streams = await Promise.all(Array.from({ length: BATCH }, () => openStream()));
      for (const s of streams) {
        for (let i = 0; i < 5; i++)
          s.send({
            event: 'media',
            media: { track: 'inbound', chunk: String(i + 1), timestamp: String(i * 20), payload: SILENCE },
          });
        s.send({ event: 'stop', stop: { accountSid: ACCOUNT_SID, callSid: s.callSid } });
      }
      const closes = await Promise.all(streams.map((s) => s.closed));
      expect(closes.every((c) => c.code === 1000 || c.code === 1005)).toBe(true);
    }

    await waitFor(() => app.engine.liveCalls === 0, 10_000);
    expect([...app.engine.sessions()]).toEqual([]);
    // A call stopped while its STT socket was still connecting abandons the attempt: at most one each.
    expect(stt.connections.length - connectionsBefore).toBeLessThanOrEqual(CALLS);
    expect(stt.connections.length - connectionsBefore).toBeGreaterThan(CALLS / 2);
    await waitFor(() => stt.connections.every((c) => c.closed !== null), 10_000);
    expect(stt.connections.slice(connectionsBefore).every((c) => c.closed?.by === 'client')).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(heldBatches()).toBe(0); // no inbound audio left held for the STT
    expect(openBatchers()).toBe(0); // every STT session closed its batcher
    const after = resourceCounts();
    for (const kind of ['Timeout', 'TCPSocketWrap', 'TCPWRAP']) {
      expect(after[kind] ?? 0, kind).toBeLessThanOrEqual((before[kind] ?? 0) + 2);
    }
  }, 120_000);

  test('fuzzed frames close the socket with 1008 and never the process; the next call is answered', async () => {
    const junk = fc.oneof(
      fc.string({ maxLength: 300 }),
      fc.json({ maxDepth: 3 }),
      fc
        .tuple(
          fc.constantFrom('start', 'media', 'mark', 'dtmf', 'stop', 'connected'),
          fc.jsonValue({ maxDepth: 2 }),
        )
        .map(([event, body]) => JSON.stringify({ event, [event]: body, sequenceNumber: 7 })),
      fc.string({ maxLength: 400 }).map((payload) =>
        JSON.stringify({
          event: 'media',
          media: { track: 'inbound', chunk: '1', timestamp: '0', payload },
        }),
      ),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(junk, { minLength: 25, maxLength: 40 }), async (frames) => {
        const s = await openStream();
        for (const f of frames) if (s.ws.readyState === WebSocket.OPEN) s.ws.send(f);
        // Enough invalid frames always end it; valid ones among them are harmless.
        for (let i = 0; i < 25 && s.ws.readyState === WebSocket.OPEN; i++) s.ws.send('{not json');
        const closed = await s.closed;
        expect([1000, 1008]).toContain(closed.code);
      }),
      { numRuns: 25 },
    );
    await waitFor(() => app.engine.liveCalls === 0, 10_000);
    const s = await openStream();
    s.send({ event: 'stop', stop: { accountSid: ACCOUNT_SID, callSid: s.callSid } });
    expect((await s.closed).code).toBe(1000);
  }, 60_000);
});
