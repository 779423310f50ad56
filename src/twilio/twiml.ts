/** TwiML answers, built with the twilio package's VoiceResponse (escaping included). */
import VoiceResponse from 'twilio/lib/twiml/VoiceResponse.js';

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
