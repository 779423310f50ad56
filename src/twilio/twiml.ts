/** TwiML answers, built with the twilio package's VoiceResponse (escaping included). */
import VoiceResponse from 'twilio/lib/twiml/VoiceResponse.js';
import { AppError } from '../errors.ts';

export function conversationRelayTwiml(options: {
  relayUrl: string;
  actionUrl: string;
  language: string;
}): string {
  const response = new VoiceResponse();
  const connect = response.connect({ action: options.actionUrl });
  connect.conversationRelay({ url: options.relayUrl, language: options.language, dtmfDetection: true });
  return response.toString();
}

export function dialTwiml(number: string): string {
  const response = new VoiceResponse();
  response.dial(number);
  return response.toString();
}

export function sayAndHangupTwiml(text: string | null): string {
  const response = new VoiceResponse();
  if (text) response.say(text);
  response.hangup();
  return response.toString();
}

export interface MediaStreamTwimlOptions {
  /**
   * The WebSocket Twilio streams the call's audio to: `wss://` (Twilio connects to nothing else;
   * `ws://` is accepted for local fakes). No query string: Twilio drops it, so anything the socket
   * needs goes in `parameters`.
   */
  readonly streamUrl: string;
  /** Called by Twilio when the stream ends (the socket closed); its TwiML decides what happens next. */
  readonly actionUrl: string;
  /** `<Parameter>` pairs, delivered in the stream's `start.customParameters`. */
  readonly parameters: Readonly<Record<string, string>>;
  /** Receives Twilio's stream-started / stream-stopped / stream-error callbacks (POST). */
  readonly statusCallbackUrl?: string;
}

/**
 * `<Connect action><Stream url>` with its parameters: a bidirectional Media Stream (inbound audio
 * only, the one track Twilio offers on `<Connect>`). Throws AppError ERR_TWIML_INVALID for a stream
 * URL Twilio would not use as given.
 */
export function mediaStreamTwiml(options: MediaStreamTwimlOptions): string {
  let url: URL;
  try {
    url = new URL(options.streamUrl);
  } catch {
    throw new AppError('ERR_TWIML_INVALID', 'media stream url is not a URL');
  }
  if (url.protocol !== 'wss:' && url.protocol !== 'ws:')
    throw new AppError('ERR_TWIML_INVALID', `media stream url must be wss:// (got ${url.protocol})`);
  if (options.streamUrl.includes('?'))
    throw new AppError(
      'ERR_TWIML_INVALID',
      'media stream url must not carry a query string (Twilio drops it); use parameters',
    );
  const response = new VoiceResponse();
  const connect = response.connect({ action: options.actionUrl });
  const stream = connect.stream({
    url: options.streamUrl,
    ...(options.statusCallbackUrl === undefined
      ? {}
      : { statusCallback: options.statusCallbackUrl, statusCallbackMethod: 'POST' as const }),
  });
  for (const [name, value] of Object.entries(options.parameters)) stream.parameter({ name, value });
  return response.toString();
}
