/**
 * `npm run fakes`: the provider fakes as standalone servers, so a developer can run the real engine
 * and the test client's audio mode end to end on one machine without provider accounts:
 *
 *   npm run fakes -- --transcript "How much do you charge to come out?" --transcript "Thanks, bye"
 *
 * On 127.0.0.1, from --port-base (default 8091): the OpenAI realtime transcription socket, then
 * OpenAI's speech endpoint, then Anthropic's Messages API for Tier 3. Anthropic rather than the
 * OpenAI chat fake because an OpenAI key would also move Tier 2 onto OpenAI embeddings, which a fake
 * can only hash. It prints the environment that points the engine at them and runs until Ctrl-C.
 *
 * Fakes never go on a production path, which is why this lives under test/.
 */
import { AppError } from '../../src/errors.ts';
import { isMain, parseCli, runCli, usageError } from '../../src/cli/args.ts';
import { startFakeAnthropicServer } from './fakeAnthropicServer.ts';
import type { FakeAnthropicServer } from './fakeAnthropicServer.ts';
import { startFakeAudioServer, toneSamples } from './fakeAudioServer.ts';
import type { FakeAudioServer, FakeSpeechReply } from './fakeAudioServer.ts';
import { startFakeRealtimeServer } from './fakeRealtimeServer.ts';
import type { FakeRealtimeAnswer, FakeRealtimeServer } from './fakeRealtimeServer.ts';

export const DEFAULT_PORT_BASE = 8091;
/** What the engine asks of the real server (`silence_duration_ms`, openaiRealtimeStt.ts). */
export const DEFAULT_SILENCE_MS = 500;
export const DEFAULT_TRANSCRIPT = 'hello there';
/** About 15 characters a second, a conversational speaking rate. */
export const SPEECH_MS_PER_CHAR = 65;
const MIN_SPEECH_MS = 200;
const TONE_HZ = 440;
export const LLM_REPLY =
  'This is the fake language model: it cannot understand you, but your question reached Tier 3. Is there anything else I can help with?';
/** The key the fakes accept and the printed command passes. */
const FAKE_KEY = 'fake';

export interface DevFakesOptions {
  /** Answers for the caller's utterances, in order; after them every utterance gets `defaultTranscript`. */
  readonly transcripts?: readonly string[];
  readonly defaultTranscript?: string;
  /**
   * The transcriber listens here, speech on the next port, the language model on the one after.
   * 0: ports the system picks (tests). Default DEFAULT_PORT_BASE.
   */
  readonly portBase?: number;
  /** Silence that ends an utterance, in audio ms. Default DEFAULT_SILENCE_MS. */
  readonly silenceMs?: number;
  /** Length of the speech tone per character of text. Default SPEECH_MS_PER_CHAR. */
  readonly speechMsPerChar?: number;
  readonly onAnswer?: (answer: FakeRealtimeAnswer) => void;
  /** Each answer of the speech fake's `POST /audio/transcriptions` (the other STT mode). */
  readonly onTranscription?: (answer: { readonly text: string; readonly scripted: boolean }) => void;
}

export interface DevFakes {
  readonly stt: FakeRealtimeServer;
  readonly tts: FakeAudioServer;
  readonly llm: FakeAnthropicServer;
  /** The engine's environment for these fakes, in the order it is printed. */
  readonly env: Readonly<Record<string, string>>;
  /**
   * The same with the other STT mode: utterances cut by the engine's VAD, each posted as a WAV to
   * the speech fake's `/audio/transcriptions`, as to a local whisper server.
   */
  readonly transcriptionsEnv: Readonly<Record<string, string>>;
  close(): Promise<void>;
}

/** A tone as long as the text would take to say (`msPerChar`), so replies last about as long as speech. */
export function speechTone(
  msPerChar = SPEECH_MS_PER_CHAR,
): (body: Readonly<Record<string, unknown>>) => FakeSpeechReply {
  return (body) => {
    const text = typeof body['input'] === 'string' ? body['input'] : '';
    const durationMs = Math.max(MIN_SPEECH_MS, text.length * msPerChar);
    return { type: 'pcm', samples: toneSamples(durationMs, TONE_HZ) };
  };
}

const ROLES = ['the fake transcriber', 'the fake speech endpoint', 'the fake language model'] as const;

function listenFailure(err: unknown, port: number, role: string): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EADDRINUSE') {
    return new AppError(
      'ERR_PORT_IN_USE',
      `port ${port} (${role}) is already in use: is \`npm run fakes\` already running? ` +
        'Stop it, or move the fakes with --port-base N',
      { cause: err },
    );
  }
  if (code === 'EACCES') {
    return new AppError(
      'ERR_PORT_DENIED',
      `port ${port} (${role}) needs privileges: use --port-base 1024 or above`,
      {
        cause: err,
      },
    );
  }
  return err;
}

/** Starts the three fakes; on failure closes those already started and says which port failed. */
export async function startDevFakes(options: DevFakesOptions = {}): Promise<DevFakes> {
  const base = options.portBase ?? DEFAULT_PORT_BASE;
  const portOf = (i: number) => (base === 0 ? 0 : base + i);
  const started: Array<{ close(): Promise<void> }> = [];
  const closeAll = async () => {
    for (const server of started.splice(0).reverse()) await server.close();
  };
  const start = async <T extends { close(): Promise<void> }>(
    i: number,
    run: (port: number) => Promise<T>,
  ): Promise<T> => {
    try {
      const server = await run(portOf(i));
      started.push(server);
      return server;
    } catch (err) {
      await closeAll();
      throw listenFailure(err, portOf(i), ROLES[i]!);
    }
  };

  const stt = await start(0, (port) =>
    startFakeRealtimeServer({
      port,
      apiKey: FAKE_KEY,
      silenceMsToStop: options.silenceMs ?? DEFAULT_SILENCE_MS,
      defaultTranscript: options.defaultTranscript ?? DEFAULT_TRANSCRIPT,
      ...(options.onAnswer === undefined ? {} : { onAnswer: options.onAnswer }),
    }),
  );
  stt.script(...(options.transcripts ?? []));
  // The transcriptions endpoint answers from its own copy of the lines: an engine uses one mode.
  const pending = [...(options.transcripts ?? [])];
  const tts = await start(1, (port) =>
    startFakeAudioServer({
      port,
      defaultSpeech: speechTone(options.speechMsPerChar),
      defaultTranscription: () => {
        const scripted = pending.shift();
        const text = scripted ?? options.defaultTranscript ?? DEFAULT_TRANSCRIPT;
        options.onTranscription?.({ text, scripted: scripted !== undefined });
        return { type: 'text', text };
      },
    }),
  );
  const llm = await start(2, (port) =>
    startFakeAnthropicServer({ port, defaultReply: { type: 'text', text: LLM_REPLY } }),
  );

  const rest = {
    TTS_PROVIDER: 'openai',
    TTS_BASE_URL: tts.baseURL,
    TTS_API_KEY: FAKE_KEY,
    ANTHROPIC_API_KEY: FAKE_KEY,
    ANTHROPIC_BASE_URL: llm.baseURL,
  };
  return {
    stt,
    tts,
    llm,
    env: { STT_PROVIDER: 'openai-realtime', STT_BASE_URL: stt.baseURL, STT_API_KEY: FAKE_KEY, ...rest },
    transcriptionsEnv: {
      STT_PROVIDER: 'openai-transcriptions',
      STT_BASE_URL: tts.baseURL,
      STT_API_KEY: FAKE_KEY,
      ...rest,
    },
    close: closeAll,
  };
}

/** One word for a POSIX shell, quoted only when it has to be. */
function shellWord(value: string): string {
  return /^[\w@%+=:,./-]+$/.test(value) ? value : `'${value.replaceAll("'", `'\\''`)}'`;
}

/** `K=V … npm start`. */
export function engineCommand(env: Readonly<Record<string, string>>): string {
  return `${Object.entries(env)
    .map(([k, v]) => `${k}=${shellWord(v)}`)
    .join(' ')} npm start`;
}

function describeFakes(
  fakes: DevFakes,
  options: {
    readonly transcripts: readonly string[];
    readonly defaultTranscript: string;
    readonly silenceMs: number;
  },
): string {
  const queued = options.transcripts.length;
  // Say what the transcriber will claim to have heard, so the printed call makes sense as a dialogue.
  const lines = queued > 0 ? options.transcripts : [options.defaultTranscript];
  const say = lines.map((line) => `--say ${shellWord(line)}`).join(' ');
  const realtime = `${fakes.stt.baseURL.replace(/^http/, 'ws')}/realtime`;
  return [
    'Fakes on 127.0.0.1 (Ctrl-C stops them):',
    `  transcriber     ${realtime}  (OpenAI realtime transcription)`,
    `  speech          ${fakes.tts.baseURL}/audio/speech  (OpenAI text to speech)`,
    `  transcriptions  ${fakes.tts.baseURL}/audio/transcriptions  (the other STT mode, as a local whisper server)`,
    `  language model  ${fakes.llm.baseURL}/v1/messages  (Anthropic Messages, Tier 3)`,
    '',
    'The fake transcribers do not recognise speech: each answers utterances with the ' +
      `--transcript lines in order (${queued === 0 ? 'none given' : `${queued} queued`}), then "${options.defaultTranscript}". ` +
      `For the realtime one, an utterance is loud audio followed by ${options.silenceMs} ms of silence; ` +
      "in the other mode the engine's own VAD cuts utterances.",
    `The fake speech endpoint does not speak: every reply is a ${TONE_HZ} Hz tone, ` +
      `${SPEECH_MS_PER_CHAR} ms per character of its text.`,
    `The fake language model answers every Tier 3 request with: "${LLM_REPLY}"`,
    'The fakes add no latency of their own.',
    '',
    'Start the engine against them (another terminal):',
    '',
    `  ${engineCommand(fakes.env)}`,
    '',
    'Then call it (a third terminal):',
    '',
    `  npm run call -- --media ${say}`,
    '',
    "To try the other STT mode instead (the engine's VAD cuts each utterance and posts it as a WAV),",
    'start the engine with:',
    '',
    `  ${engineCommand(fakes.transcriptionsEnv)}`,
    '',
  ].join('\n');
}

const USAGE = `usage: npm run fakes -- [--transcript "…"]… [--default-transcript "…"] [--port-base N] [--silence-ms N]
  Starts the fake transcriber (port N), speech endpoint (N+1) and language model (N+2) on 127.0.0.1;
  N defaults to ${DEFAULT_PORT_BASE}, 0 lets the system pick. Each --transcript answers one utterance, in order.
`;

function wholeNumber(name: string, raw: string | undefined, min: number, max: number): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max)
    throw usageError(`--${name} takes a whole number from ${min} to ${max}: ${raw}`, USAGE);
  return n;
}

function parseFakesArgs(argv: string[]) {
  return parseCli(
    argv,
    {
      transcript: { type: 'string', multiple: true, default: [] },
      'default-transcript': { type: 'string', default: DEFAULT_TRANSCRIPT },
      'port-base': { type: 'string' },
      'silence-ms': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    USAGE,
  );
}

async function main(): Promise<number> {
  const { values } = parseFakesArgs(process.argv.slice(2));
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const portBase = wholeNumber('port-base', values['port-base'], 0, 65_533);
  if (portBase !== undefined && portBase !== 0 && portBase < 1024)
    throw usageError(`--port-base must be 0 or from 1024: ${portBase}`, USAGE);
  const silenceMs = wholeNumber('silence-ms', values['silence-ms'], 20, 10_000) ?? DEFAULT_SILENCE_MS;
  const transcripts = values.transcript;
  const defaultTranscript = values['default-transcript'];

  let utterances = 0;
  /** One line per utterance a fake transcriber answered, whichever STT mode the engine uses. */
  const announce = (fake: string, text: string, scripted: boolean) => {
    utterances += 1;
    const source = scripted ? '' : ' (no --transcript left: the default)';
    process.stdout.write(`${fake}: utterance ${utterances} → "${text}"${source}\n`);
  };
  const fakes = await startDevFakes({
    transcripts,
    defaultTranscript,
    silenceMs,
    ...(portBase === undefined ? {} : { portBase }),
    onAnswer: (a) =>
      announce(
        'transcriber',
        typeof a.answer === 'string' ? a.answer : `(failure) ${a.answer.fail}`,
        a.scripted,
      ),
    onTranscription: (a) => announce('transcriptions', a.text, a.scripted),
  });
  process.stdout.write(describeFakes(fakes, { transcripts, defaultTranscript, silenceMs }));

  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await fakes.close();
  process.stdout.write(
    `fakes stopped: ${fakes.stt.connections.length} transcription sessions, ${fakes.tts.transcriptionRequests.length} transcription requests, ${fakes.tts.speechRequests.length} speech requests, ${fakes.llm.requests.length} language model requests\n`,
  );
  return 0;
}

if (isMain(import.meta.url)) {
  runCli('fakes failed', main());
}
