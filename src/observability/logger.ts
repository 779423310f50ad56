/**
 * pino, with the paths that could carry secrets, signatures, audio or caller numbers redacted.
 * Static messages; data goes in the object.
 */
import { pino } from 'pino';
import type { Logger } from 'pino';

export type { Logger };

const REDACT = [
  'authorization',
  '*.authorization',
  'headers["x-twilio-signature"]',
  '*.headers["x-twilio-signature"]',
  'apiKey',
  '*.apiKey',
  'authToken',
  '*.authToken',
  'token',
  '*.token',
  'payload',
  '*.payload',
  'from',
  '*.from',
  'to',
  '*.to',
  'caller',
  '*.caller',
  'callbackNumber',
  '*.callbackNumber',
  'slots.callbackNumber',
  '*.slots.callbackNumber',
];

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    { level, redact: { paths: REDACT, censor: '[redacted]' }, base: { service: 'switchboard' } },
    destination,
  );
}

/** Masks a phone number for logs: +1555•••4567 → "+1•••67". */
export function maskNumber(number: string | undefined | null): string {
  if (!number) return '';
  return `${number.slice(0, 2)}•••${number.slice(-2)}`;
}
