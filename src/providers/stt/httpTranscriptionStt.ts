/**
 * SttProvider for OpenAI-compatible servers that only offer `POST /v1/audio/transcriptions` (local
 * Whisper servers, or OpenAI without Realtime). A VAD supplied by the caller cuts the μ-law stream
 * into utterances; each is decoded to a 16-bit PCM WAV and uploaded as `multipart/form-data` through
 * our own HTTP client (src/providers/http/), as the LLM, speech and embeddings adapters do; loading the
 * `openai` SDK for it added about 45 ms to every start of the engine, whichever STT it used.
 *
 * Latency: the upload starts when the VAD reports the end of speech, so the final text arrives one
 * request later than Realtime's would. There are no partial transcripts in this mode.
 */
import { Vad } from '../../audio/vad.ts';
import type { VadOptions } from '../../audio/vad.ts';
import { randomBytes } from 'node:crypto';
import type { Transcription } from 'openai/resources/audio/transcriptions';
import {
  HttpAbortError,
  HttpAnswerError,
  OPENAI_API_BASE_URL,
  createHttpClient,
  isSuccessStatus,
  readJsonBody,
  type HttpClient,
} from '../http/httpClient.ts';
import {
  SttError,
  callSafely,
  type SttCallbacks,
  type SttProvider,
  type SttSession,
  type SttUsage,
} from './sttSession.ts';
import { mulawToWav } from './mulawWav.ts';
import { sttCostUsd } from './sttPrices.ts';

/** A speech edge reported by the caller's VAD for the frame just pushed, or null for none. */
export type VadEdge = 'speech-start' | 'speech-stop' | null;

/** The caller's voice activity detector, one per call (it keeps state across frames). */
export interface SttVad {
  /** Called synchronously with every inbound μ-law frame, in order. */
  push(frame: Uint8Array): VadEdge;
}

/** Switchboard's local energy VAD (src/audio/vad.ts) in the shape this adapter segments with. */
export function localSegmentingVad(options?: VadOptions): SttVad {
  let edge: VadEdge = null;
  const vad = new Vad((event) => {
    edge = event === 'speechStarted' ? 'speech-start' : 'speech-stop';
  }, options);
  return {
    push(frame) {
      edge = null;
      vad.push(frame);
      return edge;
    },
  };
}

export interface HttpTranscriptionSttOptions {
  readonly apiKey: string;
  /** Must include `/v1`. Default https://api.openai.com/v1 (the app passes STT_BASE_URL or OPENAI_BASE_URL). */
  readonly baseURL?: string;
  /** Default gpt-4o-mini-transcribe; local servers often want e.g. 'whisper-1' or their own name. */
  readonly model?: string;
  /** ISO-639-1, e.g. 'en'. */
  readonly language?: string;
  readonly prompt?: string;
  /** Makes a fresh VAD for each session. */
  readonly createVad: () => SttVad;
  /** Frames kept from before the VAD's start edge, since VADs fire a little late. Default 15 (300 ms). */
  readonly prerollFrames?: number;
  /** Longer speech is uploaded in pieces of this length (their texts are joined). Default 30. */
  readonly maxUtteranceSeconds?: number;
  /** Speech shorter than this is not uploaded and yields onFinal(''). Default 200. */
  readonly minUtteranceMs?: number;
  /** Per upload. Default 10 000. */
  readonly timeoutMs?: number;
  /** Replaces the built-in μ-law → PCM16 WAV encoder (e.g. one from src/audio). */
  readonly encodeWav?: (mulaw: Uint8Array) => Uint8Array;
  /** Audio uploaded, reported per successful upload. */
  readonly onUsage?: (usage: SttUsage) => void;
}

const DEFAULT_MODEL = 'gpt-4o-mini-transcribe';
const MULAW_BYTES_PER_SECOND = 8000;
/** The most of a transcription answer that is read: its JSON is a line of text and a usage object. */
const MAX_ANSWER_BYTES = 1024 * 1024;

interface Utterance {
  readonly id: string;
  frames: Uint8Array[];
  bytes: number;
  speechBytes: number;
  readonly pieces: Promise<string>[];
}

/** Creates the batch STT provider. One connection pool serves every session, so connections are reused. */
export function createHttpTranscriptionStt(options: HttpTranscriptionSttOptions): SttProvider {
  const model = options.model ?? DEFAULT_MODEL;
  // No retries: by the time a retry answered, the caller would have moved on.
  const client = createHttpClient({
    apiKey: options.apiKey,
    baseURL: options.baseURL ?? OPENAI_API_BASE_URL,
  });
  return {
    provider: 'openai',
    model,
    openSttSession: (callbacks) => openSession(client, model, options, callbacks),
  };
}

function openSession(
  client: HttpClient,
  model: string,
  options: HttpTranscriptionSttOptions,
  callbacks: SttCallbacks,
): SttSession {
  const vad = options.createVad();
  const prerollFrames = options.prerollFrames ?? 15;
  const maxPieceBytes = (options.maxUtteranceSeconds ?? 30) * MULAW_BYTES_PER_SECOND;
  const minSpeechBytes = ((options.minUtteranceMs ?? 200) * MULAW_BYTES_PER_SECOND) / 1000;
  const timeoutMs = options.timeoutMs ?? 10_000;
  const encodeWav = options.encodeWav ?? mulawToWav;
  // Aborted by close(): every upload still in flight is cut on the wire.
  const sessionAbort = new AbortController();

  let closed = false;
  let preroll: Uint8Array[] = [];
  let current: Utterance | null = null;
  let nextId = 1;
  // Finals are delivered in utterance order even when a later upload answers first.
  let tail: Promise<void> = Promise.resolve();
  let framesSent = 0;
  let framesDropped = 0;
  let bytesSent = 0;
  let finals = 0;

  const upload = async (frames: readonly Uint8Array[], utteranceId: string): Promise<string> => {
    const mulaw = concat(frames);
    framesSent += frames.length;
    bytesSent += mulaw.length;
    const timeout = AbortSignal.timeout(timeoutMs);
    try {
      const fields: [name: string, value: string][] = [
        ['model', model],
        ['response_format', 'json'],
      ];
      if (options.language !== undefined) fields.push(['language', options.language]);
      if (options.prompt !== undefined) fields.push(['prompt', options.prompt]);
      const wav = {
        name: 'file',
        filename: `utterance-${utteranceId}.wav`,
        type: 'audio/wav',
        data: encodeWav(mulaw),
      };
      const response = await client.request({
        method: 'POST',
        path: '/audio/transcriptions',
        body: multipartForm(wav, fields),
        signal: AbortSignal.any([sessionAbort.signal, timeout]),
      });
      if (!isSuccessStatus(response.status)) {
        const status = response.status;
        const message = await client.errorMessage(response);
        throw new SttError('ERR_STT_HTTP', `transcription answered HTTP ${status}: ${message}`, {
          fatal: false,
          status,
          retryable: status === 408 || status === 429 || status >= 500,
        });
      }
      const result = (await readJsonBody(response.body, MAX_ANSWER_BYTES)) as Partial<Transcription> | null;
      if (typeof result !== 'object' || result === null || typeof result.text !== 'string') {
        throw new SttError('ERR_STT_BAD_RESPONSE', 'transcription answer has no text', { fatal: false });
      }
      reportUsage(mulaw.length, result.usage);
      return result.text.trim();
    } catch (err) {
      throw translateError(err, timeout.aborted, timeoutMs, client);
    }
  };

  const reportUsage = (bytes: number, usage: Transcription['usage']) => {
    if (options.onUsage === undefined && callbacks.onUsage === undefined) return;
    const audioSeconds = bytes / MULAW_BYTES_PER_SECOND;
    const report: SttUsage = {
      provider: 'openai',
      model,
      audioSeconds,
      costUsd: sttCostUsd(model, audioSeconds),
      reported:
        usage?.type === 'tokens'
          ? { type: 'tokens', inputTokens: usage.input_tokens, outputTokens: usage.output_tokens }
          : usage?.type === 'duration'
            ? { type: 'duration', seconds: usage.seconds }
            : null,
    };
    for (const sink of [options.onUsage, callbacks.onUsage]) {
      try {
        sink?.(report);
      } catch {
        // A failing cost sink must not lose the transcript.
      }
    }
  };

  const startPiece = (utterance: Utterance) => {
    const piece = upload(utterance.frames, utterance.id);
    // Handled later by allSettled; this stops an early failure counting as unhandled meanwhile.
    piece.catch(() => undefined);
    utterance.pieces.push(piece);
    utterance.frames = [];
    utterance.bytes = 0;
  };

  const finish = (utterance: Utterance) => {
    const stoppedAt = performance.now();
    const tooShort = utterance.pieces.length === 0 && utterance.speechBytes < minSpeechBytes;
    if (!tooShort && utterance.frames.length > 0) startPiece(utterance);
    const settled = Promise.allSettled(utterance.pieces);
    tail = tail.then(async () => {
      const results = await settled;
      if (closed) return;
      const failure = results.find((r) => r.status === 'rejected');
      if (failure !== undefined) {
        callSafely(callbacks, () => callbacks.onError(failure.reason as SttError));
        return;
      }
      const text = results
        .map((r) => (r.status === 'fulfilled' ? r.value : ''))
        .filter((t) => t !== '')
        .join(' ');
      finals += 1;
      const info = { utteranceId: utterance.id, latencyMs: performance.now() - stoppedAt };
      callSafely(callbacks, () => callbacks.onFinal(text, info));
    });
  };

  return {
    sendMulaw(frame) {
      if (closed) {
        framesDropped += 1;
        return;
      }
      // Kept until the utterance is sent: a copy, since the caller may reuse its buffer.
      const bytes = typeof frame === 'string' ? Buffer.from(frame, 'base64') : new Uint8Array(frame);
      let edge: VadEdge;
      try {
        edge = vad.push(bytes);
      } catch (err) {
        edge = null;
        callSafely(callbacks, () => {
          throw err;
        });
      }

      if (current === null) {
        // The frames before this one, plus this one in case it is the start.
        preroll.push(bytes);
        if (preroll.length > prerollFrames + 1) preroll.shift();
        if (edge !== 'speech-start') return;
        let prerollBytes = 0;
        for (const f of preroll) prerollBytes += f.length;
        current = {
          id: String(nextId++),
          frames: preroll,
          bytes: prerollBytes,
          speechBytes: bytes.length,
          pieces: [],
        };
        preroll = [];
        callSafely(callbacks, () => callbacks.onSpeechStarted());
        return;
      }

      current.frames.push(bytes);
      current.bytes += bytes.length;
      current.speechBytes += bytes.length;
      if (edge === 'speech-stop') {
        const utterance = current;
        current = null;
        callSafely(callbacks, () => callbacks.onSpeechStopped('vad'));
        finish(utterance);
      } else if (current.bytes >= maxPieceBytes) {
        startPiece(current);
      }
    },

    async close() {
      if (!closed) {
        closed = true;
        current = null;
        preroll = [];
        sessionAbort.abort();
      }
      await tail;
    },

    stats() {
      return {
        state: closed ? 'closed' : 'open',
        framesSent,
        framesDropped,
        bytesSent,
        audioSecondsSent: bytesSent / MULAW_BYTES_PER_SECOND,
        reconnects: 0,
        finals,
      };
    },
  };
}

function concat(frames: readonly Uint8Array[]): Uint8Array {
  let length = 0;
  for (const f of frames) length += f.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const f of frames) {
    out.set(f, offset);
    offset += f.length;
  }
  return out;
}

interface FormFile {
  readonly name: string;
  readonly filename: string;
  readonly type: string;
  readonly data: Uint8Array;
}

/**
 * A `multipart/form-data` body (RFC 7578): the file first, then the text fields (UTF-8). The
 * boundary is random, so neither the audio nor a prompt can contain it by accident.
 */
function multipartForm(
  file: FormFile,
  fields: readonly (readonly [string, string])[],
): { contentType: string; data: Buffer } {
  const boundary = `----switchboard-${randomBytes(12).toString('hex')}`;
  const parts: Buffer[] = [
    Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="${file.name}"; filename="${file.filename}"\r\n` +
        `Content-Type: ${file.type}\r\n\r\n`,
    ),
    Buffer.from(file.data.buffer, file.data.byteOffset, file.data.byteLength),
  ];
  let text = '\r\n';
  for (const [name, value] of fields) {
    text += `--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`;
  }
  text += `--${boundary}--\r\n`;
  parts.push(Buffer.from(text, 'utf8'));
  return { contentType: `multipart/form-data; boundary=${boundary}`, data: Buffer.concat(parts) };
}

/** Maps whatever the request threw onto a non-fatal SttError; provider text has the API key masked. */
function translateError(err: unknown, timedOut: boolean, timeoutMs: number, client: HttpClient): SttError {
  if (err instanceof SttError) return err;
  if (err instanceof HttpAnswerError) {
    return new SttError('ERR_STT_BAD_RESPONSE', `transcription failed: ${err.message}`, {
      fatal: false,
      cause: err,
    });
  }
  if (timedOut) {
    return new SttError('ERR_STT_TIMEOUT', `transcription exceeded ${timeoutMs} ms`, {
      fatal: false,
      retryable: true,
      cause: err,
    });
  }
  // Only close() aborts otherwise, and a closed session reports nothing; named for the logs all the same.
  if (err instanceof HttpAbortError) {
    return new SttError('ERR_STT_CONNECTION', 'transcription aborted: the session closed', {
      fatal: false,
      cause: err,
    });
  }
  const message = client.redact(err instanceof Error ? err.message : String(err));
  return new SttError('ERR_STT_CONNECTION', `transcription connection failed: ${message}`, {
    fatal: false,
    retryable: true,
    cause: err,
  });
}
