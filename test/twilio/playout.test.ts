import { describe, expect, it, vi } from 'vitest';
import type { HeardReport } from '../../src/calls/callTransport.ts';
import {
  Playout,
  type FirstAudioTiming,
  type PlayoutLink,
  type PlayoutOptions,
  type ReplyStats,
} from '../../src/speech/playout.ts';
import { waitFor } from '../support/waitFor.ts';
import { captureLogger, fakeSpeech, type FakeSpeech, type FakeSpeechOptions } from './mediaDoubles.ts';

const S1 = 'Thanks for calling Riverside Plumbing.';
const S2 = 'We can send someone out this afternoon.';
const S3 = 'Would two o clock work for you today?';
const THREE = `${S1} ${S2} ${S3}`;

type Sent =
  | { readonly kind: 'audio'; readonly bytes: Buffer }
  | { readonly kind: 'mark'; readonly name: string }
  | { readonly kind: 'clear' };

interface Harness {
  readonly playout: Playout;
  /** Cork depth now, corks so far, and audio frames sent while corked. */
  readonly corked: number;
  readonly corks: number;
  readonly framesCorked: number;
  readonly speech: FakeSpeech;
  readonly sent: Sent[];
  readonly heard: HeardReport[];
  readonly ended: ReplyStats[];
  readonly firstAudio: FirstAudioTiming[];
  readonly waits: number[];
  readonly lines: string[];
  /** Speech requests already started when each mark was sent. */
  readonly callsAtMark: number[];
  buffered: number;
  /** Echoes every mark sent and not echoed yet, as Twilio does once the audio has played. */
  echoMarks(): void;
  /** Marks sent so far. */
  marks(): string[];
  /** The text each audio frame belongs to (by its byte value), run-length: one entry per run. */
  audioRuns(): string[];
}

function harness(speechOptions: FakeSpeechOptions = {}, options: Partial<PlayoutOptions> = {}): Harness {
  const speech = fakeSpeech(speechOptions);
  const { log, lines } = captureLogger();
  const sent: Sent[] = [];
  const callsAtMark: number[] = [];
  let echoed = 0;
  const h = { buffered: 0, corked: 0, corks: 0, framesCorked: 0 };
  const link: PlayoutLink = {
    sendAudio: (b64) => {
      if (h.corked > 0) h.framesCorked += 1;
      sent.push({ kind: 'audio', bytes: Buffer.from(b64, 'base64') });
    },
    sendMark: (name) => {
      callsAtMark.push(speech.calls.length);
      sent.push({ kind: 'mark', name });
    },
    sendClear: () => sent.push({ kind: 'clear' }),
    cork: () => {
      h.corked += 1;
      h.corks += 1;
    },
    uncork: () => {
      h.corked -= 1;
    },
    get bufferedAmount() {
      return h.buffered;
    },
    open: true,
  };
  const heard: HeardReport[] = [];
  const ended: ReplyStats[] = [];
  const firstAudio: FirstAudioTiming[] = [];
  const waits: number[] = [];
  const playout = new Playout({
    link,
    speech,
    voice: 'alloy',
    billing: (turn) => ({ companyId: 'acme', callId: 'call-1', callSid: 'CA1', turn }),
    log,
    observer: {
      onHeard: (r) => heard.push(r),
      onReplyEnded: (s) => ended.push(s),
      onFirstAudio: (t) => firstAudio.push(t),
      onBackpressure: (ms) => waits.push(ms),
    },
    ...options,
  });
  const marks = () => sent.flatMap((s) => (s.kind === 'mark' ? [s.name] : []));
  return Object.assign(h, {
    playout,
    speech,
    sent,
    heard,
    ended,
    firstAudio,
    waits,
    lines,
    callsAtMark,
    marks,
    echoMarks() {
      const all = marks();
      for (; echoed < all.length; echoed++) playout.onMark(all[echoed]!);
    },
    audioRuns() {
      const byByte = new Map(
        [S1, S2, S3, THREE, ...speech.calls.map((c) => c.text)].map((t) => [speech.byteFor(t), t]),
      );
      const runs: string[] = [];
      let last: Sent | null = null;
      for (const s of sent) {
        if (s.kind === 'audio') {
          const text = byByte.get(s.bytes[0]!) ?? `byte ${s.bytes[0]}`;
          if (last?.kind !== 'audio' || runs.at(-1) !== text) runs.push(text);
        } else runs.push(s.kind === 'mark' ? `mark ${s.name}` : 'clear');
        last = s;
      }
      return runs;
    },
  });
}

const tick = () => new Promise((r) => setTimeout(r, 0));

describe('Playout', () => {
  it('says a fixed line as one chunk of whole 160-byte frames, then a mark; done when the mark returns', async () => {
    const h = harness({ chunks: 2, framesPerChunk: 3 });
    let done = 0;
    h.playout.speak('Hello, thanks for calling.', { turn: 0, cacheable: true, onDone: () => done++ });
    await waitFor(() => h.marks().length === 1);
    const audio = h.sent.filter((s) => s.kind === 'audio');
    expect(audio).toHaveLength(6);
    for (const a of audio) {
      expect(a.bytes.length).toBe(160);
      expect(a.bytes.every((b) => b === h.speech.byteFor('Hello, thanks for calling.'))).toBe(true);
    }
    expect(h.sent.at(-1)).toEqual({ kind: 'mark', name: 'g1.0.0' });
    expect(h.speech.calls[0]!.request).toMatchObject({
      voice: 'alloy',
      cacheable: true,
      billing: { companyId: 'acme', callId: 'call-1', callSid: 'CA1', turn: 0 },
    });
    await tick();
    expect(done).toBe(0);
    h.echoMarks();
    expect(done).toBe(0); // never from inside onMark's caller stack: a microtask later
    await tick();
    expect(done).toBe(1);
    expect(h.heard).toEqual([{ turn: 0, heard: 'Hello, thanks for calling.', interrupted: false }]);
    expect(h.ended[0]).toMatchObject({ outcome: 'done', framesSent: 6, clearSent: false, failedChunks: 0 });
  });

  it('sends a burst of frames corked, so it leaves in one write, and always uncorks', async () => {
    const h = harness({ chunks: 2, framesPerChunk: 3 });
    h.playout.speak('Hello, thanks for calling.', { turn: 0, cacheable: true, onDone: () => undefined });
    await waitFor(() => h.marks().length === 1);
    expect(h.framesCorked).toBe(6);
    expect(h.corks).toBe(2); // one per synthesis chunk of 3 frames
    expect(h.corked).toBe(0);
  });

  it('says generated text sentence by sentence, each followed by its mark, synthesizing one sentence ahead', async () => {
    const h = harness({ chunks: 2, framesPerChunk: 2, delayMs: 5 });
    let done = 0;
    h.playout.speak(THREE, { turn: 2, cacheable: false, onDone: () => done++ });
    await waitFor(() => h.marks().length === 3);
    expect(h.audioRuns()).toEqual([S1, 'mark g1.2.0', S2, 'mark g1.2.1', S3, 'mark g1.2.2']);
    expect(h.speech.calls.map((c) => c.text)).toEqual([S1, S2, S3]);
    expect(h.speech.calls.every((c) => !c.request.cacheable)).toBe(true);
    // When a sentence's mark went out, the next sentence was already being synthesized, and no more.
    expect(h.callsAtMark).toEqual([2, 3, 3]);
    h.echoMarks();
    await tick();
    expect(done).toBe(1);
    expect(h.heard).toEqual([{ turn: 2, heard: THREE, interrupted: false }]);
  });

  it('cuts synthesis output of any size into whole frames, padding the last with μ-law silence', async () => {
    const h = harness({ chunks: 2, chunkBytes: 250 });
    h.playout.speak('An odd sized line of audio.', { turn: 0, cacheable: true, onDone: () => undefined });
    await waitFor(() => h.marks().length === 1);
    const audio = h.sent.flatMap((s) => (s.kind === 'audio' ? [s.bytes] : []));
    expect(audio.map((a) => a.length)).toEqual([160, 160, 160, 160]);
    const byte = h.speech.byteFor('An odd sized line of audio.');
    const last = audio[3]!;
    expect(last.subarray(0, 20).every((b) => b === byte)).toBe(true);
    expect(last.subarray(20).every((b) => b === 0xff)).toBe(true);
  });

  it('plays replies one at a time in the order asked, cached and live alike', async () => {
    const h = harness({ chunks: 1, framesPerChunk: 2 });
    const done: string[] = [];
    h.playout.speak('The greeting line for callers.', {
      turn: 0,
      cacheable: true,
      onDone: () => done.push('a'),
    });
    h.playout.speak(S1, { turn: 1, cacheable: false, onDone: () => done.push('b') });
    await waitFor(() => h.marks().length === 1);
    await tick();
    // The second reply waits until the first has played.
    expect(h.marks()).toEqual(['g1.0.0']);
    expect(h.speech.calls).toHaveLength(1);
    h.echoMarks();
    await waitFor(() => h.marks().length === 2);
    expect(h.audioRuns()).toEqual(['The greeting line for callers.', 'mark g1.0.0', S1, 'mark g2.1.0']);
    h.echoMarks();
    await tick();
    expect(done).toEqual(['a', 'b']);
  });

  it('on stop: clear, synthesis aborted, the echoes of flushed audio ignored, heard = what had played', async () => {
    // S3 is slow to synthesize, so it is still in flight when the caller barges in.
    const h = harness({ chunks: 2, framesPerChunk: 2, delayMs: (text) => (text === S3 ? 200 : 0) });
    let done = 0;
    const stop = h.playout.speak(THREE, { turn: 1, cacheable: false, onDone: () => done++ });
    await waitFor(() => h.marks().length === 2);
    // Twilio played S1 only.
    h.playout.onMark('g1.1.0');
    stop();
    expect(h.sent.at(-1)).toEqual({ kind: 'clear' });
    expect(h.heard).toEqual([{ turn: 1, heard: S1, interrupted: true }]);
    expect(h.ended[0]).toMatchObject({ outcome: 'stopped', clearSent: true });
    const s3 = h.speech.calls.find((c) => c.text === S3)!;
    expect(s3.request.signal.aborted).toBe(true);
    await waitFor(() => s3.ended);
    expect(s3.yielded).toBe(0);
    // Twilio echoes the mark of the flushed S2 audio: stale, ignored.
    h.playout.onMark('g1.1.1');
    expect(h.playout.stats().staleMarks).toBe(1);
    // The next reply follows the clear and completes on its own marks.
    h.playout.speak('Sorry, go ahead please.', { turn: 1, cacheable: true, onDone: () => done++ });
    await waitFor(() => h.marks().length === 3);
    expect(h.audioRuns().slice(-3)).toEqual(['clear', 'Sorry, go ahead please.', 'mark g2.1.0']);
    h.echoMarks();
    await tick();
    expect(done).toBe(1);
    expect(h.heard).toHaveLength(2);
    expect(h.speech.pendingTimers).toBe(0);
  });

  it('sends no clear when nothing of the reply has been sent, or all of it has played', async () => {
    const h = harness({ chunks: 1, framesPerChunk: 1, delayMs: 100 });
    const stop = h.playout.speak(S1, { turn: 1, cacheable: false, onDone: () => undefined });
    await tick();
    stop();
    expect(h.sent).toEqual([]);
    expect(h.speech.calls[0]!.request.signal.aborted).toBe(true);
    expect(h.heard).toEqual([{ turn: 1, heard: '', interrupted: true }]);

    // A draft whose sentences have all played waits for more text; abandoning it needs no clear.
    const g = harness({ chunks: 1, framesPerChunk: 1 });
    g.playout.draft(3, `${S1} We`);
    await waitFor(() => g.marks().length === 1);
    g.echoMarks();
    g.playout.abandonDraft(3);
    expect(g.sent.filter((s) => s.kind === 'clear')).toEqual([]);
    expect(g.heard).toEqual([{ turn: 3, heard: S1, interrupted: true }]);
  });

  it('never calls onDone once stop was called, and stop after the end does nothing', async () => {
    const h = harness({ chunks: 1, framesPerChunk: 1 });
    let done = 0;
    const stop = h.playout.speak(S1, { turn: 1, cacheable: false, onDone: () => done++ });
    await waitFor(() => h.marks().length === 1);
    h.echoMarks();
    // The reply has ended; the machine leaves its state (calling stop) before onDone's microtask.
    stop();
    await tick();
    expect(done).toBe(0);
    expect(h.sent.filter((s) => s.kind === 'clear')).toEqual([]);
    expect(h.heard).toHaveLength(1);

    const stop2 = h.playout.speak(S2, { turn: 2, cacheable: false, onDone: () => done++ });
    await waitFor(() => h.marks().length === 2);
    h.echoMarks();
    await tick();
    expect(done).toBe(1);
    stop2();
    expect(h.heard).toHaveLength(2);
    expect(h.sent.filter((s) => s.kind === 'clear')).toEqual([]);
  });

  it('skips a sentence whose synthesis fails, says the rest, and logs the code but never the text', async () => {
    const h = harness({ chunks: 2, framesPerChunk: 1, fail: (t) => (t === S2 ? 'before' : null) });
    let done = 0;
    h.playout.speak(THREE, { turn: 1, cacheable: false, onDone: () => done++ });
    await waitFor(() => h.marks().length === 2);
    expect(h.audioRuns()).toEqual([S1, 'mark g1.1.0', S3, 'mark g1.1.2']);
    h.echoMarks();
    await tick();
    expect(done).toBe(1);
    expect(h.heard).toEqual([{ turn: 1, heard: `${S1} ${S3}`, interrupted: false }]);
    expect(h.ended[0]).toMatchObject({ failedChunks: 1, outcome: 'done' });
    const warn = h.lines.find((l) => l.includes('speech synthesis failed'));
    expect(warn).toContain('ERR_TTS_HTTP');
    for (const line of h.lines) for (const s of [S1, S2, S3]) expect(line).not.toContain(s);
  });

  it('plays what a failing sentence produced but does not count it as heard', async () => {
    const h = harness({ chunks: 2, framesPerChunk: 1, fail: (t) => (t === S2 ? 'after-first' : null) });
    h.playout.speak(THREE, { turn: 1, cacheable: false, onDone: () => undefined });
    await waitFor(() => h.marks().length === 3);
    expect(h.audioRuns()).toEqual([S1, 'mark g1.1.0', S2, 'mark g1.1.1', S3, 'mark g1.1.2']);
    h.echoMarks();
    expect(h.heard).toEqual([{ turn: 1, heard: `${S1} ${S3}`, interrupted: false }]);
  });

  it('still calls onDone when nothing at all could be said', async () => {
    const h = harness({ fail: () => 'before' });
    let done = 0;
    h.playout.speak(THREE, { turn: 1, cacheable: false, onDone: () => done++ });
    await waitFor(() => done === 1);
    expect(h.sent).toEqual([]);
    expect(h.heard).toEqual([{ turn: 1, heard: '', interrupted: false }]);
    // An empty line is done at once too.
    h.playout.speak('   ', { turn: 2, cacheable: true, onDone: () => done++ });
    await waitFor(() => done === 2);
  });

  it('speaks a draft as it grows; the final text continues it without repeating a sentence', async () => {
    const h = harness({ chunks: 1, framesPerChunk: 1 });
    let done = 0;
    h.playout.draft(4, `${S1} We can`);
    await waitFor(() => h.marks().length === 1);
    h.playout.draft(4, `${S1} ${S2} Would`);
    await waitFor(() => h.marks().length === 2);
    h.playout.speak(THREE, { turn: 4, cacheable: false, onDone: () => done++ });
    await waitFor(() => h.marks().length === 3);
    expect(h.speech.calls.map((c) => c.text)).toEqual([S1, S2, S3]);
    expect(h.audioRuns()).toEqual([S1, 'mark g1.4.0', S2, 'mark g1.4.1', S3, 'mark g1.4.2']);
    h.echoMarks();
    await tick();
    expect(done).toBe(1);
    expect(h.heard).toEqual([{ turn: 4, heard: THREE, interrupted: false }]);
    // A late draft for a turn already spoken is ignored.
    h.playout.draft(4, `${THREE} And more text follows here.`);
    await tick();
    expect(h.speech.calls).toHaveLength(3);
  });

  it('when the final text does not continue the draft, ends the draft where it is and says the final text after it', async () => {
    const h = harness({ chunks: 1, framesPerChunk: 1 });
    const fallback = 'Sorry, let me get someone who can help you.';
    h.playout.draft(2, `${S1} We can`);
    await waitFor(() => h.marks().length === 1);
    h.playout.speak(fallback, { turn: 2, cacheable: true, onDone: () => undefined });
    await waitFor(() => h.marks().length === 2);
    expect(h.speech.calls.map((c) => [c.text, c.request.cacheable])).toEqual([
      [S1, false],
      [fallback, true],
    ]);
    h.echoMarks();
    expect(h.heard).toEqual([{ turn: 2, heard: `${S1} ${fallback}`, interrupted: false }]);
  });

  it('abandons a draft on request (clear when it is playing) and ignores its later drafts', async () => {
    const h = harness({ chunks: 2, framesPerChunk: 1, delayMs: (_t, i) => (i === 1 ? 100 : 0) });
    h.playout.draft(5, `${S1} ${S2} Would`);
    await waitFor(() => h.sent.some((s) => s.kind === 'audio'));
    h.playout.abandonDraft(5);
    expect(h.sent.at(-1)).toEqual({ kind: 'clear' });
    expect(h.speech.calls.every((c) => c.request.signal.aborted)).toBe(true);
    expect(h.heard).toEqual([{ turn: 5, heard: '', interrupted: true }]);
    h.playout.draft(5, `${THREE}`);
    await tick();
    expect(h.speech.calls).toHaveLength(2);
  });

  it('drops a draft overtaken by a reply for another turn', async () => {
    const h = harness({ chunks: 1, framesPerChunk: 1, delayMs: 50 });
    h.playout.draft(6, `${S1} We`);
    await tick();
    h.playout.speak('Are you still there with me?', { turn: 7, cacheable: true, onDone: () => undefined });
    expect(h.speech.calls[0]!.request.signal.aborted).toBe(true);
    expect(h.ended[0]).toMatchObject({ turn: 6, outcome: 'abandoned' });
    await waitFor(() => h.marks().length === 1);
    expect(h.marks()).toEqual(['g2.7.0']);
  });

  it('waits while the socket holds too much, then resumes; a stop during the wait leaves no timer', async () => {
    const h = harness({ chunks: 1, framesPerChunk: 4 }, { maxBufferedBytes: 1000, backpressurePollMs: 5 });
    h.buffered = 5000;
    h.playout.speak(S1, { turn: 1, cacheable: false, onDone: () => undefined });
    await new Promise((r) => setTimeout(r, 40));
    expect(h.sent).toEqual([]);
    h.buffered = 0;
    await waitFor(() => h.marks().length === 1);
    expect(h.sent.filter((s) => s.kind === 'audio')).toHaveLength(4);
    expect(h.waits).toHaveLength(1);
    expect(h.waits[0]).toBeGreaterThanOrEqual(30);
    expect(h.playout.stats().backpressureWaits).toBe(1);

    // Stopped while waiting: the poll timer goes with the reply.
    vi.useFakeTimers();
    try {
      const g = harness({ chunks: 1, framesPerChunk: 4 }, { maxBufferedBytes: 1000, backpressurePollMs: 5 });
      g.buffered = 5000;
      const stop = g.playout.speak(S2, { turn: 2, cacheable: false, onDone: () => undefined });
      await vi.advanceTimersByTimeAsync(20);
      expect(g.sent).toEqual([]);
      expect(vi.getTimerCount()).toBe(1); // the poll
      stop();
      expect(vi.getTimerCount()).toBe(0);
      expect(g.ended[0]).toMatchObject({ outcome: 'stopped', backpressureWaits: 1, framesSent: 0 });
    } finally {
      vi.useRealTimers();
    }
  });

  it('treats a reply as played when its marks never come back (the call must not hang)', async () => {
    const h = harness({ chunks: 1, framesPerChunk: 1 }, { markTimeoutMs: 30 });
    let done = 0;
    h.playout.speak(S1, { turn: 1, cacheable: false, onDone: () => done++ });
    await waitFor(() => done === 1, 1000);
    expect(h.lines.some((l) => l.includes('marks did not come back'))).toBe(true);
    expect(h.heard).toEqual([{ turn: 1, heard: '', interrupted: false }]);
  });

  it('reports the first audio of each reply with its source, synthesis time and caller timing', async () => {
    const caller = { speechStoppedAt: performance.now() - 500, finalAt: performance.now() - 200 };
    const h = harness({ chunks: 1, framesPerChunk: 1, firstAudioMs: 42 }, { callerTiming: () => caller });
    const asked = performance.now();
    h.playout.speak(S1, { turn: 1, cacheable: false, onDone: () => undefined });
    await waitFor(() => h.firstAudio.length === 1);
    const t = h.firstAudio[0]!;
    expect(t).toMatchObject({ turn: 1, source: 'tts', ttsFirstAudioMs: 42, caller });
    expect(t.sinceStartMs).toBeGreaterThanOrEqual(0);
    expect(t.sinceStartMs).toBeLessThanOrEqual(performance.now() - asked);
    expect(t.at - caller.speechStoppedAt).toBeGreaterThanOrEqual(500);
  });

  it('counts frames that arrive after the audio before them has run out (gaps the caller hears)', async () => {
    const h = harness({ chunks: 1, framesPerChunk: 1, delayMs: (t) => (t === S2 ? 120 : 0) });
    h.playout.speak(`${S1} ${S2}`, { turn: 1, cacheable: false, onDone: () => undefined });
    await waitFor(() => h.marks().length === 2);
    h.echoMarks();
    expect(h.ended[0]).toMatchObject({ framesSent: 2, lateFrames: 1 });
    expect(h.ended[0]!.lateMs).toBeGreaterThan(50);

    const smooth = harness({ chunks: 3, framesPerChunk: 5 });
    smooth.playout.speak(THREE, { turn: 1, cacheable: false, onDone: () => undefined });
    await waitFor(() => smooth.marks().length === 3);
    smooth.echoMarks();
    expect(smooth.ended[0]).toMatchObject({ framesSent: 45, lateFrames: 0 });
  });

  it('close aborts everything without clear and never calls onDone', async () => {
    const h = harness({ chunks: 2, framesPerChunk: 1, delayMs: (_t, i) => (i === 1 ? 200 : 0) });
    let done = 0;
    h.playout.speak(THREE, { turn: 1, cacheable: false, onDone: () => done++ });
    h.playout.speak(S1, { turn: 2, cacheable: false, onDone: () => done++ });
    await waitFor(() => h.sent.length > 0);
    h.playout.close();
    expect(h.sent.some((s) => s.kind === 'clear')).toBe(false);
    expect(h.speech.calls.every((c) => c.request.signal.aborted)).toBe(true);
    expect(h.ended.map((s) => [s.turn, s.outcome])).toEqual([
      [1, 'closed'],
      [2, 'closed'],
    ]);
    await tick();
    expect(done).toBe(0);
    expect(h.speech.pendingTimers).toBe(0);
    // Nothing starts after close.
    h.playout.speak(S2, { turn: 3, cacheable: false, onDone: () => done++ });
    h.playout.draft(4, S3);
    await tick();
    expect(h.speech.calls).toHaveLength(2);
  });
});
