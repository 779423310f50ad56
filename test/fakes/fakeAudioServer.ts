/**
 * A fake OpenAI-compatible audio server for tests that drive the speech and transcription clients on
 * the wire:
 * `POST /v1/audio/speech` streams raw PCM16 (a generated tone by default) in uneven, odd-sized chunks
 * with configurable first-byte latency and records whether the client hung up early;
 * `POST /v1/audio/transcriptions` reads the multipart upload, records the file (and checks it is a
 * WAV) and answers scripted text.
 *
 * Its own small node:http server: the shared fake core in fakeOpenAiServer.ts only reads JSON bodies.
 */
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { listenLocal } from './listen.ts';

export type ClientWentAway = 'before-first-byte' | 'before-last-byte' | 'no';

export interface FakeSpeechRequest {
  readonly index: number;
  readonly headers: IncomingHttpHeaders;
  /** The JSON body the SDK sent. */
  readonly body: Readonly<Record<string, unknown>>;
  readonly receivedAtMs: number;
  /** Audio bytes written so far. */
  readonly bytesSent: number;
  /** The whole answer's length in bytes. */
  readonly bytesPlanned: number;
  readonly clientWentAway: ClientWentAway;
  /** performance.now() when the exchange ended; null while it runs. */
  readonly settledAtMs: number | null;
}

/** Raw PCM16 audio. `samples` defaults to a 440 Hz tone of `durationMs` (default 300). */
export interface FakePcmReply {
  readonly type: 'pcm';
  readonly samples?: Int16Array;
  readonly durationMs?: number;
  /** Chunk sizes in bytes, cycled. Default DEFAULT_CHUNK_SIZES (odd and uneven). */
  readonly chunkSizes?: readonly number[];
  /** After the headers, before the first audio byte. Default 0. */
  readonly firstByteDelayMs?: number;
  /** Between chunks. Default 1. */
  readonly chunkIntervalMs?: number;
  /** The fake destroys the socket after this many bytes (a server-side drop). */
  readonly dropAfterBytes?: number;
  readonly contentType?: string;
}

export interface FakeAudioErrorReply {
  readonly type: 'error';
  readonly status: number;
  readonly message?: string;
}

/** 200 with a JSON body where audio was expected. */
export interface FakeJsonReply {
  readonly type: 'json';
  readonly body: unknown;
}

/** Never answer until the client goes away. */
export interface FakeHangReply {
  readonly type: 'hang';
}

export type FakeSpeechReply = FakePcmReply | FakeAudioErrorReply | FakeJsonReply | FakeHangReply;

export interface ParsedWav {
  readonly formatCode: number;
  readonly channels: number;
  readonly sampleRate: number;
  readonly bitsPerSample: number;
  /** The data chunk as samples (16-bit files only; empty otherwise). */
  readonly samples: Int16Array;
}

export interface FakeTranscriptionRequest {
  readonly index: number;
  readonly headers: IncomingHttpHeaders;
  /** The multipart text fields (model, language, response_format, ...). */
  readonly fields: Readonly<Record<string, string>>;
  readonly file: { readonly name: string; readonly type: string; readonly bytes: Uint8Array } | null;
  /** The file parsed as WAV; null when it is not a valid WAV. */
  readonly wav: ParsedWav | null;
  readonly receivedAtMs: number;
  readonly clientWentAway: boolean;
  readonly settledAtMs: number | null;
}

export type FakeTranscriptionReply =
  | { readonly type: 'text'; readonly text: string; readonly delayMs?: number }
  /** 200 with this body as it is (e.g. an HTML page from a proxy). */
  | { readonly type: 'raw'; readonly body: string; readonly contentType?: string }
  | FakeAudioErrorReply
  | FakeHangReply;

export interface FakeAudioServer {
  readonly baseURL: string;
  readonly speechRequests: readonly FakeSpeechRequest[];
  readonly transcriptionRequests: readonly FakeTranscriptionRequest[];
  scriptSpeech(...replies: FakeSpeechReply[]): void;
  scriptTranscriptions(...replies: FakeTranscriptionReply[]): void;
  /** Resolves once speech request `index` has arrived and ended on the wire. */
  speechSettled(index: number): Promise<FakeSpeechRequest>;
  transcriptionSettled(index: number): Promise<FakeTranscriptionRequest>;
  close(): Promise<void>;
}

export interface FakeAudioOptions {
  /** Port on 127.0.0.1. Default 0: one the system picks. */
  readonly port?: number;
  /**
   * The answer to a speech request once the script queue is empty, from the request's JSON body.
   * Default: a 300 ms 440 Hz tone whatever the text.
   */
  readonly defaultSpeech?: (body: Readonly<Record<string, unknown>>) => FakeSpeechReply;
  /**
   * The answer to a transcription request once the script queue is empty. Default: the text
   * "fake transcript".
   */
  readonly defaultTranscription?: () => FakeTranscriptionReply;
}

export const DEFAULT_CHUNK_SIZES: readonly number[] = [1, 333, 2048, 7, 1001, 2, 513, 96];

/** A sine tone as PCM16 samples. */
export function toneSamples(durationMs: number, hz = 440, sampleRate = 24_000, amplitude = 8000): Int16Array {
  const out = new Int16Array(Math.round((durationMs * sampleRate) / 1000));
  for (let i = 0; i < out.length; i++)
    out[i] = Math.round(amplitude * Math.sin((2 * Math.PI * hz * i) / sampleRate));
  return out;
}

/** Little-endian bytes of PCM16 samples. */
export function pcm16Bytes(samples: Int16Array): Uint8Array {
  const bytes = new Uint8Array(samples.length * 2);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < samples.length; i++) view.setInt16(i * 2, samples[i]!, true);
  return bytes;
}

/** Reads a RIFF/WAVE file's fmt and data chunks; null when it is not a well-formed WAV. */
export function parseWav(bytes: Uint8Array): ParsedWav | null {
  if (bytes.length < 12) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const tag = (offset: number) => String.fromCharCode(...bytes.subarray(offset, offset + 4));
  if (tag(0) !== 'RIFF' || tag(8) !== 'WAVE' || view.getUint32(4, true) !== bytes.length - 8) return null;
  let fmt: Omit<ParsedWav, 'samples'> | null = null;
  let offset = 12;
  while (offset + 8 <= bytes.length) {
    const id = tag(offset);
    const size = view.getUint32(offset + 4, true);
    const start = offset + 8;
    if (start + size > bytes.length) return null;
    if (id === 'fmt ' && size >= 16) {
      fmt = {
        formatCode: view.getUint16(start, true),
        channels: view.getUint16(start + 2, true),
        sampleRate: view.getUint32(start + 4, true),
        bitsPerSample: view.getUint16(start + 14, true),
      };
      if (view.getUint32(start + 8, true) !== (fmt.sampleRate * fmt.channels * fmt.bitsPerSample) / 8)
        return null;
    } else if (id === 'data') {
      if (fmt === null) return null;
      const samples = new Int16Array(fmt.bitsPerSample === 16 ? size >> 1 : 0);
      for (let i = 0; i < samples.length; i++) samples[i] = view.getInt16(start + i * 2, true);
      return { ...fmt, samples };
    }
    offset = start + size + (size & 1);
  }
  return null;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** Starts the fake on 127.0.0.1 (a random port unless `port` is given). */
export async function startFakeAudioServer(options: FakeAudioOptions = {}): Promise<FakeAudioServer> {
  const speechRequests: Mutable<FakeSpeechRequest>[] = [];
  const transcriptionRequests: Mutable<FakeTranscriptionRequest>[] = [];
  const speechQueue: FakeSpeechReply[] = [];
  const transcriptionQueue: FakeTranscriptionReply[] = [];
  const speechWaiters = new Map<number, ReturnType<typeof deferred<FakeSpeechRequest>>>();
  const transcriptionWaiters = new Map<number, ReturnType<typeof deferred<FakeTranscriptionRequest>>>();
  const sockets = new Set<Socket>();
  const waiter = <T>(map: Map<number, ReturnType<typeof deferred<T>>>, index: number) => {
    let w = map.get(index);
    if (w === undefined) {
      w = deferred<T>();
      map.set(index, w);
    }
    return w;
  };

  const sendError = (res: ServerResponse, status: number, message: string) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { message, type: 'invalid_request_error', param: null, code: null } }));
  };

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const path = (req.url ?? '/').split('?')[0];
      if (req.method === 'POST' && path === '/v1/audio/speech') {
        void speech(req.headers, raw, res);
      } else if (req.method === 'POST' && path === '/v1/audio/transcriptions') {
        void transcription(req.headers, raw, res);
      } else {
        sendError(res, 404, `No route for ${req.method} ${path}`);
      }
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });

  async function speech(headers: IncomingHttpHeaders, raw: Buffer, res: ServerResponse): Promise<void> {
    let body: Record<string, unknown> = {};
    try {
      body = JSON.parse(raw.toString('utf8')) as Record<string, unknown>;
    } catch {
      sendError(res, 400, 'The request body is not valid JSON.');
      return;
    }
    const record: Mutable<FakeSpeechRequest> = {
      index: speechRequests.length,
      headers,
      body,
      receivedAtMs: performance.now(),
      bytesSent: 0,
      bytesPlanned: 0,
      clientWentAway: 'no',
      settledAtMs: null,
    };
    speechRequests.push(record);
    let gone = false;
    let finished = false;
    res.on('close', () => {
      gone = true;
      if (!finished)
        record.clientWentAway = record.bytesSent === 0 ? 'before-first-byte' : 'before-last-byte';
      record.settledAtMs = performance.now();
      waiter(speechWaiters, record.index).resolve(record);
    });
    const finish = () => {
      finished = true;
    };
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

    const reply = speechQueue.shift() ?? options.defaultSpeech?.(body) ?? { type: 'pcm' };
    switch (reply.type) {
      case 'error':
        finish();
        sendError(res, reply.status, reply.message ?? `fake error ${reply.status}`);
        return;
      case 'json':
        finish();
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(reply.body));
        return;
      case 'hang':
        return;
      case 'pcm': {
        const bytes = pcm16Bytes(reply.samples ?? toneSamples(reply.durationMs ?? 300));
        record.bytesPlanned = bytes.length;
        const sizes = reply.chunkSizes ?? DEFAULT_CHUNK_SIZES;
        res.writeHead(200, {
          'content-type': reply.contentType ?? 'audio/pcm',
          'transfer-encoding': 'chunked',
        });
        res.flushHeaders();
        await sleep(reply.firstByteDelayMs ?? 0);
        let offset = 0;
        let turn = 0;
        while (offset < bytes.length && !gone) {
          let size = sizes[turn++ % sizes.length] ?? 1;
          if (reply.dropAfterBytes !== undefined) size = Math.min(size, reply.dropAfterBytes - offset);
          if (size <= 0) {
            finish();
            res.socket?.destroy();
            return;
          }
          const piece = bytes.subarray(offset, offset + size);
          res.write(piece);
          offset += piece.length;
          record.bytesSent = offset;
          await sleep(reply.chunkIntervalMs ?? 1);
        }
        if (!gone) {
          finish();
          res.end();
        }
      }
    }
  }

  async function transcription(
    headers: IncomingHttpHeaders,
    raw: Buffer,
    res: ServerResponse,
  ): Promise<void> {
    const record: Mutable<FakeTranscriptionRequest> = {
      index: transcriptionRequests.length,
      headers,
      fields: {},
      file: null,
      wav: null,
      receivedAtMs: performance.now(),
      clientWentAway: false,
      settledAtMs: null,
    };
    transcriptionRequests.push(record);
    let finished = false;
    res.on('close', () => {
      if (!finished) record.clientWentAway = true;
      record.settledAtMs = performance.now();
      waiter(transcriptionWaiters, record.index).resolve(record);
    });
    // undici's multipart parser, through the web Response API.
    let form: FormData;
    try {
      form = await new Response(raw, {
        headers: { 'content-type': headers['content-type'] ?? '' },
      }).formData();
    } catch {
      finished = true;
      sendError(res, 400, 'Could not parse multipart body.');
      return;
    }
    const fields: Record<string, string> = {};
    for (const [name, value] of form.entries()) {
      if (typeof value === 'string') {
        fields[name] = value;
      } else {
        const bytes = new Uint8Array(await value.arrayBuffer());
        record.file = { name: value.name, type: value.type, bytes };
        record.wav = parseWav(bytes);
      }
    }
    record.fields = fields;
    if (record.file === null || fields.model === undefined) {
      finished = true;
      sendError(res, 400, 'file and model are required');
      return;
    }

    const reply = transcriptionQueue.shift() ??
      options.defaultTranscription?.() ?? { type: 'text', text: 'fake transcript' };
    switch (reply.type) {
      case 'error':
        finished = true;
        sendError(res, reply.status, reply.message ?? `fake error ${reply.status}`);
        return;
      case 'hang':
        return;
      case 'raw':
        finished = true;
        res.writeHead(200, { 'content-type': reply.contentType ?? 'text/html' });
        res.end(reply.body);
        return;
      case 'text': {
        if (reply.delayMs !== undefined) await new Promise((r) => setTimeout(r, reply.delayMs));
        finished = true;
        const seconds = record.wav === null ? 0 : record.wav.samples.length / record.wav.sampleRate;
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ text: reply.text, usage: { type: 'duration', seconds } }));
      }
    }
  }

  const port = await listenLocal(server, options.port);

  return {
    baseURL: `http://127.0.0.1:${port}/v1`,
    speechRequests,
    transcriptionRequests,
    scriptSpeech: (...replies) => {
      speechQueue.push(...replies);
    },
    scriptTranscriptions: (...replies) => {
      transcriptionQueue.push(...replies);
    },
    speechSettled: (index) => waiter(speechWaiters, index).promise,
    transcriptionSettled: (index) => waiter(transcriptionWaiters, index).promise,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
