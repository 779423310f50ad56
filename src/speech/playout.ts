/**
 * The outbound audio of one Media Streams call: a queue of replies, each made of chunks (a sentence,
 * or a whole fixed line) whose μ-law audio comes from `SpeechOut`, cached or live through the same
 * queue and in order. Every 20 ms frame goes out as one `media` message; after each chunk a mark
 * (`g{generation}.{turn}.{chunk}`) asks Twilio to say when that chunk has played. A reply is done
 * when the mark after its last chunk comes back; what the caller heard is the chunks whose marks
 * came back.
 *
 * One reply is on air at a time. The next reply's audio is sent only once the previous one is done
 * (its last mark is back) or cut, so a `clear` only ever flushes the reply being cut. Within a reply
 * the next chunk's synthesis starts while the current one streams (one ahead), and its frames follow
 * at once.
 *
 * Cutting a reply (barge-in, a superseded draft, the end of the call) aborts its synthesis (the TTS
 * request is closed on the wire), sends `clear` when some of its audio may still be buffered at
 * Twilio, and forgets it. Every reply has its own generation, so the marks Twilio echoes for the
 * flushed audio after a `clear` are recognised as stale and ignored.
 *
 * Backpressure: before each frame the socket's `bufferedAmount` is checked; above `maxBufferedBytes`
 * (default 64 KiB, about 200 frames = 4 s of audio, which a healthy link drains in a blink) the
 * sender waits, polling every `backpressurePollMs`, instead of piling more onto a slow link.
 */
import { Framer, frameToBase64 } from '../audio/framer.ts';
import type { HeardReport } from '../calls/callTransport.ts';
import type { AppError } from '../errors.ts';
import { isAbortError } from '../errors.ts';
import type { Logger } from '../observability/logger.ts';
import { continuesFrom, createSentenceChunker } from './sentences.ts';
import type { SentenceChunker, SpeechBilling, SpeechOut, SpeechRequest } from './types.ts';

/** Where the playout writes: the call's Twilio socket, with the stream's messages built for it. */
export interface PlayoutLink {
  /** One 20 ms frame: 160 μ-law bytes, base64 (a `media` message). */
  sendAudio(payloadB64: string): void;
  /** A `mark` message. */
  sendMark(name: string): void;
  /** A `clear` message. */
  sendClear(): void;
  /** Bytes handed to the socket but not yet written to the network (ws `bufferedAmount`). */
  readonly bufferedAmount: number;
  /** False once the socket is closing; sends are then dropped. */
  readonly open: boolean;
  /**
   * Holds writes until `uncork`, so the frames of one burst leave in one system call instead of
   * one each. Optional: a link without it writes every message at once.
   */
  cork?(): void;
  uncork?(): void;
}

/** When the caller's words that a reply answers ended (performance.now() times), for latency figures. */
export interface CallerTiming {
  /** STT said the caller stopped speaking. */
  readonly speechStoppedAt: number | null;
  /** The final transcript arrived. */
  readonly finalAt: number | null;
}

/** A reply's first frame left for Twilio. */
export interface FirstAudioTiming {
  readonly turn: number;
  /** Where the first chunk's audio came from; null when the speech output did not say. */
  readonly source: 'cache' | 'tts' | null;
  /** performance.now() when the frame was sent. */
  readonly at: number;
  /** From speak (or the first draft) to this frame. */
  readonly sinceStartMs: number;
  /** From the synthesis request to its first audio, as the speech output reported it. */
  readonly ttsFirstAudioMs: number | null;
  /** The caller timing captured when the reply opened (null for lines no utterance led to). */
  readonly caller: CallerTiming | null;
}

/** How a reply ended. */
export type ReplyOutcome =
  /** Its last mark came back (or, failing that, `markTimeoutMs` after its audio should have played). */
  | 'done'
  /** Its stop function was called before the end (barge-in). */
  | 'stopped'
  /** A draft that was abandoned or overtaken by a reply for another turn. */
  | 'abandoned'
  /** The playout was closed (the call ended). */
  | 'closed';

export interface ReplyStats {
  readonly turn: number;
  readonly generation: number;
  readonly outcome: ReplyOutcome;
  readonly chunks: number;
  /** Chunks whose synthesis failed (skipped, wholly or from the point of failure). */
  readonly failedChunks: number;
  readonly framesSent: number;
  /** From speak/draft to the first frame; null when nothing was sent. */
  readonly firstAudioMs: number | null;
  /** Frames sent after the audio before them should already have finished playing: gaps the caller heard. */
  readonly lateFrames: number;
  /** Total length of those gaps. */
  readonly lateMs: number;
  readonly backpressureWaits: number;
  readonly backpressureWaitMs: number;
  /** Whether ending it sent `clear`. */
  readonly clearSent: boolean;
}

/** Optional hooks; each is called synchronously and must not throw. */
export interface PlayoutObserver {
  /** What the caller heard of a reply, once per reply when it ends. */
  onHeard?(report: HeardReport): void;
  onFirstAudio?(timing: FirstAudioTiming): void;
  onReplyEnded?(stats: ReplyStats): void;
  /** The sender waited this long for the socket to drain. */
  onBackpressure?(waitMs: number): void;
}

export interface PlayoutOptions {
  readonly link: PlayoutLink;
  readonly speech: SpeechOut;
  readonly voice: string;
  /** Who pays for the synthesis of a reply for `turn`. */
  readonly billing: (turn: number) => SpeechBilling;
  readonly log: Logger;
  /** Wait before sending more while the socket holds more than this. Default 64 KiB. */
  readonly maxBufferedBytes?: number;
  /** How often a waiting sender looks at the socket again. Default 10. */
  readonly backpressurePollMs?: number;
  /**
   * How long after a reply's audio should have finished playing its last mark may take to come back
   * before the reply is treated as done anyway (so the call never hangs on a lost mark). Default 5000.
   */
  readonly markTimeoutMs?: number;
  /** Read once when a reply opens. */
  readonly callerTiming?: () => CallerTiming | null;
  readonly observer?: PlayoutObserver;
}

export interface PlayoutSpeakOptions {
  readonly turn: number;
  /** A fixed line: one chunk, its audio may come from the cache. False: split into sentences. */
  readonly cacheable: boolean;
  /** Called once the reply has played (never after its stop function was called). */
  readonly onDone: () => void;
}

const DEFAULT_MAX_BUFFERED_BYTES = 64 * 1024;
const FRAME_MS = 20;

interface Chunk {
  readonly index: number;
  readonly text: string;
  readonly cacheable: boolean;
  synthesis: Synthesis | null;
}

interface SentMark {
  readonly name: string;
  readonly chunk: Chunk;
  /** The chunk's audio was whole (its synthesis did not fail). */
  readonly complete: boolean;
  /** The reply's frames sent when the mark was. */
  readonly framesAt: number;
}

type ReplyState = 'queued' | 'playing' | 'ended';

interface Reply {
  readonly turn: number;
  readonly generation: number;
  readonly startedAt: number;
  readonly caller: CallerTiming | null;
  readonly chunks: Chunk[];
  readonly abort: AbortController;
  readonly framer: Framer;
  /** Base64 frames cut by the framer, waiting for the socket. */
  readonly frames: string[];
  /** Sent marks not yet echoed, oldest first. */
  readonly marks: SentMark[];
  /** Texts of chunks whose marks came back, in order. */
  readonly heard: string[];
  state: ReplyState;
  /** Opened by a draft: speak for the same turn continues it. */
  readonly drafted: boolean;
  /** While the draft is still growing. */
  chunker: SentenceChunker | null;
  draftText: string;
  /** No more chunks will be added. */
  closed: boolean;
  onDone: (() => void) | null;
  stopped: boolean;
  /** Index of the next chunk to stream. */
  next: number;
  allSent: boolean;
  /** Frames whose playing an echoed mark has confirmed. */
  confirmedFrames: number;
  /** Wakes the sender from whatever it waits for (a chunk, the socket). */
  release: (() => void) | null;
  pollTimer: NodeJS.Timeout | null;
  watchdog: NodeJS.Timeout | null;
  /** Estimated performance.now() at which everything sent so far will have played. */
  playheadAt: number;
  framesSent: number;
  firstAudioAt: number | null;
  lateFrames: number;
  lateMs: number;
  waits: number;
  waitMs: number;
  failedChunks: number;
}

/** Totals over the playout's life (tests, metrics). */
export interface PlayoutStats {
  readonly replies: number;
  readonly framesSent: number;
  readonly marksSent: number;
  readonly staleMarks: number;
  readonly clearsSent: number;
  readonly backpressureWaits: number;
}

/**
 * The audio pulled from one `SpeechOut.frames` iteration, buffered so that synthesis can run ahead
 * of sending. Aborting the reply's signal ends it (and, through the signal, the TTS request).
 */
class Synthesis {
  readonly #buffers: Uint8Array[] = [];
  #done = false;
  #wake: (() => void) | null = null;
  error: unknown = null;
  firstAudioMs: number | null = null;
  source: 'cache' | 'tts' | null = null;

  constructor(speech: SpeechOut, text: string, request: Omit<SpeechRequest, 'onFirstAudio'>) {
    const signal = request.signal;
    signal.addEventListener('abort', () => this.#notify(), { once: true });
    void this.#run(speech, text, {
      ...request,
      onFirstAudio: (ms, source) => {
        this.firstAudioMs = ms;
        this.source = source;
      },
    });
  }

  async #run(speech: SpeechOut, text: string, request: SpeechRequest): Promise<void> {
    try {
      for await (const bytes of speech.frames(text, request)) {
        if (request.signal.aborted) break;
        this.#buffers.push(bytes);
        this.#notify();
      }
    } catch (err) {
      if (!request.signal.aborted && !isAbortError(err)) this.error = err;
    } finally {
      this.#done = true;
      this.#notify();
    }
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  /** The next piece of audio; null once the synthesis has ended, failed or been aborted. */
  async next(signal: AbortSignal): Promise<Uint8Array | null> {
    for (;;) {
      if (signal.aborted) return null;
      const bytes = this.#buffers.shift();
      if (bytes !== undefined) return bytes;
      if (this.#done) return null;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
    }
  }
}

export class Playout {
  readonly #link: PlayoutLink;
  readonly #speech: SpeechOut;
  readonly #voice: string;
  readonly #options: PlayoutOptions;
  readonly #log: Logger;
  readonly #maxBuffered: number;
  readonly #pollMs: number;
  readonly #markTimeoutMs: number;
  readonly #queue: Reply[] = [];
  #onAir: Reply | null = null;
  /** The reply drafts still grow (queued or on air). */
  #draft: Reply | null = null;
  /** Drafts for this turn or earlier come too late: their reply was spoken, cut or abandoned. */
  #draftsClosedThrough = -1;
  #generation = 0;
  #closed = false;
  #framesSent = 0;
  #marksSent = 0;
  #staleMarks = 0;
  #clearsSent = 0;
  #backpressureWaits = 0;

  constructor(options: PlayoutOptions) {
    this.#options = options;
    this.#link = options.link;
    this.#speech = options.speech;
    this.#voice = options.voice;
    this.#log = options.log;
    this.#maxBuffered = options.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES;
    this.#pollMs = options.backpressurePollMs ?? 10;
    this.#markTimeoutMs = options.markTimeoutMs ?? 5000;
  }

  /**
   * Says `text` for `turn`. When a draft for the same turn is open, this is its final text: the
   * rest is appended when it continues what the draft already queued, otherwise the draft ends where
   * it is and `text` follows as a chunk of its own. Returns the reply's stop function.
   */
  speak(text: string, options: PlayoutSpeakOptions): () => void {
    if (this.#closed) return () => undefined;
    this.#draftsClosedThrough = Math.max(this.#draftsClosedThrough, options.turn);
    const draft = this.#draft;
    this.#draft = null;
    let reply: Reply;
    if (draft !== null && draft.turn === options.turn) {
      reply = draft;
      reply.onDone = options.onDone;
      reply.closed = true;
      const chunker = draft.chunker;
      draft.chunker = null;
      if (chunker !== null && continuesFrom(draft.draftText.slice(0, chunker.consumed), text)) {
        for (const sentence of chunker.flush(text)) this.#append(reply, sentence, false);
      } else {
        this.#append(reply, text, options.cacheable);
      }
      // A sender waiting for more chunks learns there are none.
      this.#wake(reply);
    } else {
      if (draft !== null) this.#cut(draft, 'abandoned');
      reply = this.#open(options.turn, false);
      reply.onDone = options.onDone;
      reply.closed = true;
      if (options.cacheable) this.#append(reply, text, true);
      else for (const sentence of this.#sentences(text)) this.#append(reply, sentence, false);
      this.#enqueue(reply);
    }
    return () => {
      reply.stopped = true;
      this.#cut(reply, 'stopped');
    };
  }

  /** The LLM reply for `turn` so far (the whole text, growing): complete sentences are queued as they appear. */
  draft(turn: number, textSoFar: string): void {
    if (this.#closed || turn <= this.#draftsClosedThrough) return;
    let reply = this.#draft;
    if (reply !== null && reply.turn !== turn) {
      this.#cut(reply, 'abandoned');
      reply = null;
    }
    if (reply === null) {
      reply = this.#open(turn, true);
      reply.chunker = createSentenceChunker();
      this.#draft = reply;
      this.#enqueue(reply);
    }
    const chunker = reply.chunker;
    if (chunker === null) return;
    reply.draftText = textSoFar;
    for (const sentence of chunker.push(textSoFar)) this.#append(reply, sentence, false);
  }

  /** Stops the reply drafted for `turn`, whether or not its final text has arrived. */
  abandonDraft(turn: number): void {
    this.#draftsClosedThrough = Math.max(this.#draftsClosedThrough, turn);
    const replies = this.#onAir === null ? this.#queue : [this.#onAir, ...this.#queue];
    const reply = replies.find((r) => r.drafted && r.turn === turn);
    if (reply !== undefined) this.#cut(reply, 'abandoned');
  }

  /** A mark Twilio echoed: the audio before it has played (or was flushed by `clear`). */
  onMark(name: string): void {
    const reply = this.#onAir;
    const index = reply === null ? -1 : reply.marks.findIndex((m) => m.name === name);
    if (reply === null || index < 0) {
      // Echoes of audio flushed by `clear`, or of a reply that was cut: older generations.
      this.#staleMarks += 1;
      return;
    }
    for (let i = 0; i <= index; i++) {
      const mark = reply.marks.shift()!;
      if (mark.complete) reply.heard.push(mark.chunk.text);
      reply.confirmedFrames = mark.framesAt;
    }
    this.#maybeFinish(reply);
  }

  /** Ends everything without `clear` (the socket is going away): aborts synthesis, reports what was heard. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const replies = this.#onAir === null ? [...this.#queue] : [this.#onAir, ...this.#queue];
    for (const reply of replies) this.#cut(reply, 'closed');
  }

  stats(): PlayoutStats {
    return {
      replies: this.#generation,
      framesSent: this.#framesSent,
      marksSent: this.#marksSent,
      staleMarks: this.#staleMarks,
      clearsSent: this.#clearsSent,
      backpressureWaits: this.#backpressureWaits,
    };
  }

  #open(turn: number, drafted: boolean): Reply {
    const frames: string[] = [];
    return {
      turn,
      generation: ++this.#generation,
      startedAt: performance.now(),
      caller: this.#options.callerTiming?.() ?? null,
      chunks: [],
      abort: new AbortController(),
      framer: new Framer((frame) => frames.push(frameToBase64(frame))),
      frames,
      marks: [],
      heard: [],
      state: 'queued',
      drafted,
      chunker: null,
      draftText: '',
      closed: false,
      onDone: null,
      stopped: false,
      next: 0,
      allSent: false,
      confirmedFrames: 0,
      release: null,
      pollTimer: null,
      watchdog: null,
      playheadAt: 0,
      framesSent: 0,
      firstAudioAt: null,
      lateFrames: 0,
      lateMs: 0,
      waits: 0,
      waitMs: 0,
      failedChunks: 0,
    };
  }

  #sentences(text: string): string[] {
    const chunker = createSentenceChunker();
    return [...chunker.push(text), ...chunker.flush(text)];
  }

  #append(reply: Reply, text: string, cacheable: boolean): void {
    const trimmed = text.trim();
    if (trimmed === '' || reply.state === 'ended') return;
    const chunk: Chunk = { index: reply.chunks.length, text: trimmed, cacheable, synthesis: null };
    reply.chunks.push(chunk);
    // The chunk right after the one streaming: start its synthesis now (one ahead).
    if (reply.state === 'playing' && chunk.index === reply.next && reply.next > 0)
      this.#synthesize(reply, chunk);
    this.#wake(reply);
  }

  #enqueue(reply: Reply): void {
    this.#queue.push(reply);
    this.#advance();
  }

  #wake(reply: Reply): void {
    const release = reply.release;
    reply.release = null;
    release?.();
  }

  #advance(): void {
    if (this.#onAir !== null || this.#closed) return;
    const next = this.#queue.shift();
    if (next === undefined) return;
    this.#onAir = next;
    next.state = 'playing';
    this.#play(next).catch((err: unknown) => {
      this.#log.error({ err: { message: (err as Error).message }, turn: next.turn }, 'playout failed');
      // Never leave the call waiting for a reply that cannot end.
      if (next.state === 'playing') this.#finish(next);
    });
  }

  #synthesize(reply: Reply, chunk: Chunk): Synthesis {
    chunk.synthesis ??= new Synthesis(this.#speech, chunk.text, {
      voice: this.#voice,
      cacheable: chunk.cacheable,
      signal: reply.abort.signal,
      billing: this.#options.billing(reply.turn),
    });
    return chunk.synthesis;
  }

  async #play(reply: Reply): Promise<void> {
    while (reply.state === 'playing') {
      const chunk = reply.chunks[reply.next];
      if (chunk === undefined) {
        if (reply.closed) break;
        await new Promise<void>((resolve) => {
          reply.release = resolve;
        });
        continue;
      }
      reply.next += 1;
      const synthesis = this.#synthesize(reply, chunk);
      const ahead = reply.chunks[reply.next];
      if (ahead !== undefined) this.#synthesize(reply, ahead);
      await this.#stream(reply, chunk, synthesis);
    }
    if (reply.state !== 'playing') return;
    reply.allSent = true;
    if (reply.marks.length > 0) {
      const playedInMs = Math.max(0, reply.playheadAt - performance.now());
      reply.watchdog = setTimeout(() => {
        reply.watchdog = null;
        if (reply.state !== 'playing') return;
        this.#log.warn(
          { turn: reply.turn, marksMissing: reply.marks.length },
          'marks did not come back; treating the reply as played',
        );
        this.#finish(reply);
      }, playedInMs + this.#markTimeoutMs);
    }
    this.#maybeFinish(reply);
  }

  async #stream(reply: Reply, chunk: Chunk, synthesis: Synthesis): Promise<void> {
    const signal = reply.abort.signal;
    const before = reply.framesSent;
    for (;;) {
      const bytes = await synthesis.next(signal);
      if (reply.state !== 'playing') return;
      if (bytes === null) break;
      reply.framer.push(bytes);
      await this.#sendFrames(reply, synthesis);
      if (reply.state !== 'playing') return;
    }
    if (reply.framer.flush()) {
      await this.#sendFrames(reply, synthesis);
      if (reply.state !== 'playing') return;
    }
    if (synthesis.error !== null) {
      reply.failedChunks += 1;
      const code = (synthesis.error as Partial<AppError>).code ?? 'unknown';
      this.#log.warn(
        { turn: reply.turn, chunk: chunk.index, code },
        'speech synthesis failed; skipping to the next sentence',
      );
    }
    if (reply.framesSent === before) return;
    const name = `g${reply.generation}.${reply.turn}.${chunk.index}`;
    this.#link.sendMark(name);
    this.#marksSent += 1;
    reply.marks.push({ name, chunk, complete: synthesis.error === null, framesAt: reply.framesSent });
  }

  /** Sends the frames the framer has cut, waiting whenever the socket holds too much. */
  async #sendFrames(reply: Reply, synthesis: Synthesis): Promise<void> {
    const frames = reply.frames;
    const link = this.#link;
    let corked = false;
    try {
      for (let i = 0; i < frames.length; i++) {
        if (link.bufferedAmount > this.#maxBuffered && link.open) {
          if (corked) link.uncork?.();
          corked = false;
          await this.#drain(reply);
          if (reply.state !== 'playing') break;
        }
        if (!corked && frames.length - i > 1) {
          link.cork?.();
          corked = true;
        }
        link.sendAudio(frames[i]!);
        this.#noteFrameSent(reply, synthesis);
      }
    } finally {
      if (corked) link.uncork?.();
    }
    frames.length = 0;
  }

  #noteFrameSent(reply: Reply, synthesis: Synthesis): void {
    const now = performance.now();
    this.#framesSent += 1;
    reply.framesSent += 1;
    if (reply.firstAudioAt === null) {
      reply.firstAudioAt = now;
      reply.playheadAt = now + FRAME_MS;
      this.#options.observer?.onFirstAudio?.({
        turn: reply.turn,
        source: synthesis.source,
        at: now,
        sinceStartMs: now - reply.startedAt,
        ttsFirstAudioMs: synthesis.firstAudioMs,
        caller: reply.caller,
      });
      return;
    }
    // Twilio plays what it has, back to back; a frame arriving after that ran out is a gap.
    if (now > reply.playheadAt) {
      reply.lateFrames += 1;
      reply.lateMs += now - reply.playheadAt;
      reply.playheadAt = now;
    }
    reply.playheadAt += FRAME_MS;
  }

  #drain(reply: Reply): Promise<void> {
    const started = performance.now();
    reply.waits += 1;
    this.#backpressureWaits += 1;
    return new Promise<void>((resolve) => {
      const done = () => {
        if (reply.pollTimer !== null) clearTimeout(reply.pollTimer);
        reply.pollTimer = null;
        reply.release = null;
        const waitedMs = performance.now() - started;
        reply.waitMs += waitedMs;
        this.#options.observer?.onBackpressure?.(waitedMs);
        resolve();
      };
      const poll = () => {
        reply.pollTimer = null;
        const link = this.#link;
        if (reply.state !== 'playing' || !link.open || link.bufferedAmount <= this.#maxBuffered) done();
        else reply.pollTimer = setTimeout(poll, this.#pollMs);
      };
      reply.release = done;
      reply.pollTimer = setTimeout(poll, this.#pollMs);
    });
  }

  #maybeFinish(reply: Reply): void {
    if (reply.state === 'playing' && reply.allSent && reply.marks.length === 0) this.#finish(reply);
  }

  /** The reply played to the end. */
  #finish(reply: Reply): void {
    this.#end(reply, 'done', false);
    const onDone = reply.onDone;
    // Never from inside speak(), and never once the reply's stop function has been called.
    queueMicrotask(() => {
      if (!reply.stopped) onDone?.();
    });
  }

  #cut(reply: Reply, outcome: Exclude<ReplyOutcome, 'done'>): void {
    if (reply.state === 'ended') return;
    // Audio Twilio may still hold: sent frames that no echoed mark has confirmed yet.
    const clear =
      reply.state === 'playing' && reply.framesSent > reply.confirmedFrames && outcome !== 'closed';
    reply.abort.abort();
    this.#draftsClosedThrough = Math.max(this.#draftsClosedThrough, reply.turn);
    if (clear && this.#link.open) {
      this.#link.sendClear();
      this.#clearsSent += 1;
    }
    this.#end(reply, outcome, clear);
  }

  #end(reply: Reply, outcome: ReplyOutcome, clearSent: boolean): void {
    const wasOnAir = this.#onAir === reply;
    reply.state = 'ended';
    if (reply.watchdog !== null) clearTimeout(reply.watchdog);
    reply.watchdog = null;
    reply.framer.reset();
    reply.frames.length = 0;
    if (this.#draft === reply) this.#draft = null;
    if (wasOnAir) this.#onAir = null;
    else {
      const i = this.#queue.indexOf(reply);
      if (i >= 0) this.#queue.splice(i, 1);
    }
    // Let a waiting sender see the end (and clear its poll timer).
    this.#wake(reply);
    const observer = this.#options.observer;
    observer?.onHeard?.({ turn: reply.turn, heard: reply.heard.join(' '), interrupted: outcome !== 'done' });
    observer?.onReplyEnded?.({
      turn: reply.turn,
      generation: reply.generation,
      outcome,
      chunks: reply.chunks.length,
      failedChunks: reply.failedChunks,
      framesSent: reply.framesSent,
      firstAudioMs: reply.firstAudioAt === null ? null : reply.firstAudioAt - reply.startedAt,
      lateFrames: reply.lateFrames,
      lateMs: reply.lateMs,
      backpressureWaits: reply.waits,
      backpressureWaitMs: reply.waitMs,
      clearSent,
    });
    this.#advance();
  }
}
