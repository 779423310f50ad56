/**
 * The WebSocket test client: behaves as Twilio would. It posts the voice webhook (signed when
 * TWILIO_AUTH_TOKEN is set), connects to the ConversationRelay URL from the TwiML, sends setup and
 * prompts, and prints each turn with what the engine decided, how long each stage took and the cost.
 *
 *   npm run call -- --say "How much is a drain cleaning?" --say "Thanks, bye"
 *   npm run call -- --interactive
 *   npm run call -- --json --say "…"
 *
 * With --media it acts as Twilio Media Streams instead and streams audio (see mediaCall.ts):
 *
 *   npm run call -- --media --wav hours.wav --say "Thanks, bye" [--dtmf 0] [--barge-in-after-ms 800]
 *     [--save-audio heard.wav] [--json]
 */
import { randomBytes } from 'node:crypto';
import { stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline/promises';
import WebSocket from 'ws';
import { pcm16ToWav } from '../audio/wav.ts';
import type { TurnTrace } from '../calls/callTransport.ts';
import type { EnvConfig } from '../config/env.ts';
import { loadEnv } from '../config/env.ts';
import { TRACE_HEADER } from '../twilio/relayProtocol.ts';
import { twilioSignature } from '../twilio/signature.ts';
import { isMain, parseCliConfig, runCli, usageError, userPath } from './args.ts';
import type { MediaCallStep } from './mediaCall.ts';
import {
  formatMediaSummary,
  formatMediaTurn,
  loadWavUtterance,
  postVoiceWebhook,
  runMediaCall,
  synthesizeUtterance,
  unescapeXml,
} from './mediaCall.ts';
import { MULAW_RATE_HZ } from './twilioStreamSimulator.ts';

export const DEMO_NUMBER = '+15550100100';

export interface CallOptions {
  readonly url: string;
  readonly to: string;
  readonly from: string;
  readonly authToken?: string | undefined;
  /** PUBLIC_BASE_URL: the webhook is signed for the URL Twilio would have requested. */
  readonly publicBaseUrl?: string | undefined;
  readonly replyTimeoutMs?: number;
}

/** One turn as the client saw it. */
export interface ClientTurn {
  readonly utterance: string;
  readonly reply: string;
  readonly tier: 1 | 2 | 3 | 'fallback';
  readonly confidence: number;
  readonly category: string | null;
  readonly scenarioId: string | null;
  readonly warmup: string;
  readonly warmupReason: string | null;
  readonly reconciled: boolean;
  readonly slots: Record<string, string>;
  readonly latencyMs: number;
  readonly engineMs: number;
  readonly costUsd: number | null;
  readonly costEstimated: boolean;
  readonly timings: TurnTrace['record']['timings'];
  readonly end: { reasonCode?: string; transferTo?: string | null } | null;
}

type Inbound =
  | { type: 'text'; token: string; last?: boolean }
  | { type: 'end'; handoffData?: string }
  | ({ type: 'switchboard.turn' } & TurnTrace);

/** A simulated Twilio call over ConversationRelay. */
export class TestCall {
  readonly callSid = `CA${randomBytes(16).toString('hex')}`;
  greeting = '';
  ended: { reasonCode?: string; transferTo?: string | null } | null = null;
  #ws: WebSocket | null = null;
  #inbox: Inbound[] = [];
  #waiters: Array<() => void> = [];
  #closed = false;
  readonly #options: CallOptions;

  constructor(options: CallOptions) {
    this.#options = options;
  }

  /** Posts the webhook, connects to the relay URL from the TwiML, sends setup, waits for the greeting. */
  async connect(): Promise<void> {
    const { url, to, from, authToken, publicBaseUrl } = this.#options;
    const form: Record<string, string> = {
      AccountSid: `AC${'0'.repeat(32)}`,
      ApiVersion: '2010-04-01',
      CallSid: this.callSid,
      CallStatus: 'ringing',
      Direction: 'inbound',
      From: from,
      To: to,
    };
    const twiml = await postVoiceWebhook({ url, publicBaseUrl, authToken, form });
    const relay = /<ConversationRelay[^>]*\surl="([^"]+)"/.exec(twiml)?.[1];
    if (relay === undefined) throw new Error(`the webhook did not connect a relay: ${twiml}`);
    const relayUrl = unescapeXml(relay);

    const wsHeaders: Record<string, string> = { [TRACE_HEADER]: '1' };
    if (authToken) wsHeaders['x-twilio-signature'] = twilioSignature(authToken, relayUrl, {});
    const ws = new WebSocket(relayUrl, { headers: wsHeaders, perMessageDeflate: false });
    this.#ws = ws;
    await new Promise<void>((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) =>
        reject(new Error(`relay upgrade refused: HTTP ${res.statusCode}`)),
      );
    });
    ws.on('message', (data) => {
      try {
        this.#inbox.push(JSON.parse((data as Buffer).toString('utf8')) as Inbound);
      } catch {
        return;
      }
      this.#wake();
    });
    ws.on('close', () => {
      this.#closed = true;
      this.#wake();
    });
    this.#send({
      type: 'setup',
      sessionId: `VX${randomBytes(16).toString('hex')}`,
      accountSid: form['AccountSid'],
      callSid: this.callSid,
      from,
      to,
      direction: 'inbound',
      callType: 'PSTN',
      callStatus: 'RINGING',
      customParameters: {},
    });
    const greeting = await this.#next((m) => m.type === 'text' || m.type === 'end');
    if (greeting.type === 'text') this.greeting = greeting.token;
  }

  /** Says something and waits for the reply and its trace. */
  async say(utterance: string): Promise<ClientTurn> {
    this.#send({ type: 'prompt', voicePrompt: utterance, lang: 'en-US', last: true });
    const reply = await this.#next((m) => m.type === 'text');
    const trace = await this.#next((m) => m.type === 'switchboard.turn');
    if (reply.type !== 'text' || trace.type !== 'switchboard.turn')
      throw new Error('unexpected message order');
    const r = trace.record;
    // A transfer or goodbye ends the call once the reply has been spoken.
    if (r.next !== 'listen') await this.waitForEnd(reply.token.length * 100 + 5000);
    return {
      utterance,
      reply: reply.token,
      tier: r.tier,
      confidence: r.confidence,
      category: r.category,
      scenarioId: r.scenarioId,
      warmup: r.warmup,
      warmupReason: r.warmupReason,
      reconciled: r.reconciled,
      slots: { ...r.slots },
      latencyMs: trace.latencyMs,
      engineMs: trace.engineMs,
      costUsd: trace.costUsd,
      costEstimated: trace.costEstimated,
      timings: r.timings,
      end: this.ended,
    };
  }

  /** Waits for Twilio's `end` (transfer or hang-up); null if the call stays open that long. */
  async waitForEnd(timeoutMs: number): Promise<typeof this.ended> {
    if (this.ended) return this.ended;
    try {
      const end = await this.#next((m) => m.type === 'end', timeoutMs);
      if (end.type === 'end') this.ended = parseHandoff(end.handoffData);
    } catch {
      // No end within the time: the call is still open.
    }
    return this.ended;
  }

  dtmf(digit: string): void {
    this.#send({ type: 'dtmf', digit });
  }

  /** Hangs up, as Twilio closes the socket when the caller does. */
  close(): Promise<void> {
    const ws = this.#ws;
    if (ws === null || ws.readyState === WebSocket.CLOSED) return Promise.resolve();
    return new Promise((resolve) => {
      ws.once('close', () => resolve());
      ws.close(1000, 'caller hung up');
    });
  }

  #send(message: Record<string, unknown>): void {
    if (this.#ws?.readyState !== WebSocket.OPEN) throw new Error('the call is not connected');
    this.#ws.send(JSON.stringify(message));
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  async #next(
    match: (m: Inbound) => boolean,
    timeoutMs = this.#options.replyTimeoutMs ?? 30_000,
  ): Promise<Inbound> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.#inbox.findIndex(match);
      if (i >= 0) {
        return this.#inbox.splice(i, 1)[0]!;
      }
      if (this.#closed) throw new Error('the engine closed the call');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no answer within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }
}

function parseHandoff(data: string | undefined): NonNullable<TestCall['ended']> {
  try {
    return JSON.parse(data ?? '{}') as NonNullable<TestCall['ended']>;
  } catch {
    return {};
  }
}

function fmtMs(ms: number | null): string {
  return ms === null ? '-' : ms < 10 ? ms.toFixed(2) : ms.toFixed(0);
}

export function formatTurn(t: ClientTurn): string {
  const tier = t.tier === 'fallback' ? 'fallback' : `tier ${t.tier}`;
  const what = t.scenarioId ? `${t.category ?? '?'}/${t.scenarioId}` : (t.category ?? 'no category');
  const cost =
    t.costUsd === null ? 'cost unknown' : `$${t.costUsd.toFixed(6)}${t.costEstimated ? ' (est.)' : ''}`;
  const s = t.timings;
  const stages = [
    ['capture', s.captureMs],
    ['detect', s.detectMs],
    ['redetect', s.redetectMs],
    ['tier1', s.tier1Ms],
    ['gate', s.warmupGateMs],
    ['tier2', s.tier2Ms],
    ['tier3', s.tier3Ms],
    ['fallback', s.fallbackMs],
  ]
    .filter(([, v]) => v !== null)
    .map(([k, v]) => `${k as string} ${fmtMs(v as number)}`)
    .join(' · ');
  const slots = Object.entries(t.slots)
    .map(([k, v]) => `${k}=${v}`)
    .join(', ');
  return [
    `caller › ${t.utterance}`,
    `agent  › ${t.reply}`,
    `         ${tier} (${t.confidence.toFixed(2)}) · ${what} · warmup ${t.warmup}${t.warmupReason && t.warmup !== 'none' ? ` [${t.warmupReason}]` : ''}${t.reconciled ? ' · reconciled' : ''}`,
    `         ${fmtMs(t.latencyMs)} ms (engine ${fmtMs(t.engineMs)} ms) · ${cost}`,
    `         stages ms: ${stages}`,
    ...(slots ? [`         slots: ${slots}`] : []),
    ...(t.end
      ? [
          `         call ${t.end.reasonCode === 'transfer' ? `transferred to ${t.end.transferTo ?? '?'}` : 'ended'}`,
        ]
      : []),
  ].join('\n');
}

const USAGE = `usage: npm run call -- [--url http://127.0.0.1:8080] [--to +15550100100] [--from +15555550123]
  ConversationRelay (text):  --say "…" [--say "…"] [--interactive] [--json]
  Media Streams (audio):     --media (--wav FILE.wav | --say "…" | --dtmf D)… [--barge-in-after-ms N]
                             [--save-audio OUT.wav] [--json]
`;

/** The options in command-line order too (`tokens`): --wav, --say and --dtmf interleave as given. */
function parseCallArgs(argv: string[]) {
  return parseCliConfig(
    {
      args: argv,
      allowPositionals: true,
      strict: true,
      tokens: true,
      options: {
        url: { type: 'string', default: 'http://127.0.0.1:8080' },
        to: { type: 'string', default: DEMO_NUMBER },
        from: { type: 'string', default: '+15555550123' },
        say: { type: 'string', multiple: true, default: [] },
        interactive: { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', default: false },
        media: { type: 'boolean', default: false },
        wav: { type: 'string', multiple: true, default: [] },
        dtmf: { type: 'string', multiple: true, default: [] },
        'barge-in-after-ms': { type: 'string' },
        'save-audio': { type: 'string' },
      },
    },
    USAGE,
  );
}

type Cli = ReturnType<typeof parseCallArgs>;

async function main(): Promise<number> {
  const cli = parseCallArgs(process.argv.slice(2));
  const { values } = cli;
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const env = loadEnv();
  if (values.media) return mainMedia(cli, env);
  if (values.wav.length > 0 || values.dtmf.length > 0 || values['save-audio'] !== undefined)
    throw usageError('--wav, --dtmf and --save-audio need --media', USAGE);
  if (values.say.length === 0 && !values.interactive) {
    process.stdout.write(USAGE);
    return 2;
  }
  const call = new TestCall({
    url: values.url,
    to: values.to,
    from: values.from,
    authToken: env.twilio.authToken,
    publicBaseUrl: env.publicBaseUrl,
  });
  await call.connect();
  const json = values.json;
  if (!json) process.stdout.write(`agent  › ${call.greeting}\n\n`);
  const run = async (utterance: string) => {
    const turn = await call.say(utterance);
    process.stdout.write(json ? `${JSON.stringify(turn)}\n` : `${formatTurn(turn)}\n\n`);
    return turn.end === null;
  };
  let open = true;
  for (const utterance of values.say) {
    if (!(open = await run(utterance))) break;
  }
  if (open && values.interactive) {
    // Iterating the interface buffers lines, so piped input works as well as typing.
    const rl = createInterface({ input: process.stdin, terminal: false });
    const prompt = () => {
      if (!json && process.stdin.isTTY) process.stdout.write('you › ');
    };
    prompt();
    for await (const raw of rl) {
      const line = raw.trim();
      if (line === '' || line === '/quit') break;
      if (!(await run(line))) break;
      prompt();
    }
    rl.close();
  }
  await call.close();
  return 0;
}

/** Refuses a --save-audio path whose folder does not exist or is not a folder. */
async function checkSaveFolder(file: string): Promise<void> {
  const folder = path.dirname(file);
  const found = await stat(folder).catch(() => null);
  if (found === null) throw usageError(`--save-audio: the folder ${folder} does not exist`, USAGE);
  if (!found.isDirectory()) throw usageError(`--save-audio: ${folder} is not a folder`, USAGE);
}

/** --media: streams audio as Twilio Media Streams; the steps run in command-line order. */
async function mainMedia({ values, tokens }: Cli, env: EnvConfig): Promise<number> {
  if (values.interactive) throw usageError('--interactive is for the text relay; drop --media', USAGE);
  const steps: MediaCallStep[] = [];
  for (const token of tokens) {
    if (token.kind !== 'option' || token.value === undefined) continue;
    if (token.name === 'wav') {
      steps.push({ kind: 'utterance', utterance: await loadWavUtterance(userPath(token.value)) });
    } else if (token.name === 'say') {
      steps.push({ kind: 'utterance', utterance: await synthesizeUtterance(token.value) });
    } else if (token.name === 'dtmf') {
      if (!/^[0-9*#A-D]$/.test(token.value))
        throw usageError(`--dtmf takes one key (0-9, *, #, A-D): ${token.value}`, USAGE);
      steps.push({ kind: 'dtmf', digit: token.value });
    }
  }
  if (steps.length === 0) throw usageError('--media needs at least one --wav, --say or --dtmf', USAGE);
  const bargeIn = values['barge-in-after-ms'];
  const bargeInAfterMs = bargeIn === undefined ? undefined : Number(bargeIn);
  if (bargeInAfterMs !== undefined && !(Number.isInteger(bargeInAfterMs) && bargeInAfterMs >= 0))
    throw usageError(`--barge-in-after-ms takes a whole number of milliseconds: ${bargeIn}`, USAGE);
  const savePath = values['save-audio'] === undefined ? undefined : userPath(values['save-audio']);
  // Checked before the call, so a typo does not throw away the audio of a call that has happened.
  if (savePath !== undefined) await checkSaveFolder(savePath);
  const json = values.json;

  const { report, playedAudio } = await runMediaCall({
    url: values.url,
    to: values.to,
    from: values.from,
    steps,
    authToken: env.twilio.authToken,
    publicBaseUrl: env.publicBaseUrl,
    accountSid: env.twilio.accountSid,
    bargeInAfterMs,
    keepPlayedAudio: savePath !== undefined,
    ...(json ? {} : { onTurn: (turn) => process.stdout.write(`${formatMediaTurn(turn)}\n\n`) }),
  });
  if (savePath !== undefined && playedAudio !== null)
    await writeFile(savePath, pcm16ToWav(playedAudio, MULAW_RATE_HZ));
  if (json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  else {
    process.stdout.write(`${formatMediaSummary(report)}\n`);
    if (savePath !== undefined) process.stdout.write(`what the caller heard: ${savePath}\n`);
  }
  return 0;
}

if (isMain(import.meta.url)) {
  runCli('call failed', main());
}
