/**
 * Twilio's side of a Media Streams call for tests: the webhook, the stream socket, frames in order,
 * marks echoed (at once, or not at all while a test holds the caller "listening").
 */
import { randomBytes } from 'node:crypto';
import { WebSocket } from 'ws';
import { encodeMulaw, MULAW_SILENCE } from '../../src/audio/mulaw.ts';
import { twilioSignature } from '../../src/twilio/signature.ts';
import { toneSamples } from '../fakes/fakeAudioServer.ts';

export const ACCOUNT_SID = `AC${'1'.repeat(32)}`;
export const DEMO_NUMBER = '+15550100100';

/** 20 ms of a loud tone, as Twilio's base64 μ-law payload. */
export const tone = (() => {
  const samples = toneSamples(20, 300, 8000, 9000);
  const out = new Uint8Array(160);
  encodeMulaw(samples, out);
  return Buffer.from(out).toString('base64');
})();
/** 20 ms of μ-law silence. */
export const silence = Buffer.alloc(160, MULAW_SILENCE).toString('base64');

export type Outbound = Record<string, unknown> & { event: string; streamSid?: string };

/** Twilio's side of one call: the webhook, the stream socket, frames in order. */
export class TwilioSide {
  readonly callSid = `CA${randomBytes(16).toString('hex')}`;
  readonly streamSid = `MZ${randomBytes(16).toString('hex')}`;
  readonly received: Outbound[] = [];
  ws: WebSocket | null = null;
  closed: { code: number; reason: string } | null = null;
  streamUrl = '';
  parameters: Record<string, string> = {};
  twiml = '';
  /** Echo marks back as soon as they arrive (audio "played" instantly). */
  echoMarks = true;
  #seq = 0;
  #chunk = 0;
  #waiters: Array<() => void> = [];

  readonly baseUrl: string;
  readonly authToken: string | undefined;

  constructor(baseUrl: string, authToken?: string) {
    this.baseUrl = baseUrl;
    this.authToken = authToken;
  }

  async webhook(): Promise<string> {
    const params = { CallSid: this.callSid, AccountSid: ACCOUNT_SID, From: '+15555550123', To: DEMO_NUMBER };
    const url = `${this.baseUrl}/twilio/voice`;
    const res = await fetch(url, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        ...(this.authToken ? { 'x-twilio-signature': twilioSignature(this.authToken, url, params) } : {}),
      },
      body: new URLSearchParams(params).toString(),
    });
    this.twiml = await res.text();
    const stream = /<Stream url="([^"]+)"/.exec(this.twiml);
    if (stream) this.streamUrl = stream[1]!.replace(/&amp;/g, '&');
    for (const m of this.twiml.matchAll(/<Parameter name="([^"]+)" value="([^"]+)"\/>/g))
      this.parameters[m[1]!] = m[2]!;
    return this.twiml;
  }

  /** Opens the stream socket; resolves to the HTTP status when the upgrade is refused. */
  open(options: { url?: string; signature?: string; trace?: boolean } = {}): Promise<number | null> {
    const url = options.url ?? this.streamUrl;
    const headers: Record<string, string> = {};
    if (options.trace !== false) headers['x-switchboard-trace'] = '1';
    const sig = options.signature ?? (this.authToken ? twilioSignature(this.authToken, url, {}) : undefined);
    if (sig !== undefined) headers['x-twilio-signature'] = sig;
    const ws = new WebSocket(url, { headers, perMessageDeflate: false });
    this.ws = ws;
    ws.on('message', (data) => {
      const frame = JSON.parse((data as Buffer).toString('utf8')) as Outbound;
      this.received.push(frame);
      if (frame.event === 'mark' && this.echoMarks) this.send({ event: 'mark', mark: frame['mark'] });
      for (const w of this.#waiters.splice(0)) w();
    });
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      for (const w of this.#waiters.splice(0)) w();
    });
    return new Promise((resolve) => {
      ws.once('open', () => resolve(null));
      ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.once('error', () => resolve(-1));
    });
  }

  send(frame: Record<string, unknown>): void {
    if (this.ws?.readyState !== WebSocket.OPEN) return;
    const numbered = frame.event === 'connected' ? frame : { sequenceNumber: String(++this.#seq), ...frame };
    this.ws.send(
      JSON.stringify({ ...numbered, ...(frame.event === 'connected' ? {} : { streamSid: this.streamSid }) }),
    );
  }

  start(callSid = this.callSid, parameters = this.parameters): void {
    this.send({ event: 'connected', protocol: 'Call', version: '1.0.0' });
    this.send({
      event: 'start',
      start: {
        accountSid: ACCOUNT_SID,
        streamSid: this.streamSid,
        callSid,
        tracks: ['inbound'],
        customParameters: parameters,
        mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
      },
    });
  }

  audio(payload: string, frames: number): void {
    for (let i = 0; i < frames; i++) {
      this.#chunk += 1;
      this.send({
        event: 'media',
        media: { track: 'inbound', chunk: String(this.#chunk), timestamp: String(this.#chunk * 20), payload },
      });
    }
  }

  /** Speech (loud tone) then enough silence for both VADs to hear its end. */
  utter(speechMs = 600, silenceMs = 400): void {
    this.audio(tone, speechMs / 20);
    this.audio(silence, silenceMs / 20);
  }

  stop(): void {
    this.send({ event: 'stop', stop: { accountSid: ACCOUNT_SID, callSid: this.callSid } });
  }

  of(event: string): Outbound[] {
    return this.received.filter((f) => f.event === event);
  }

  async until(predicate: () => boolean, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate()) {
      if (Date.now() > deadline) throw new Error('timed out waiting');
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
  }
}
