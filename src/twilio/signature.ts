/** X-Twilio-Signature checks with the twilio package's own validator. */
import { getExpectedTwilioSignature, validateRequest } from 'twilio/lib/webhooks/webhooks.js';

export function isValidTwilioSignature(
  authToken: string,
  signature: string | undefined,
  url: string,
  params: Record<string, string>,
): boolean {
  if (signature === undefined || signature === '') return false;
  return validateRequest(authToken, signature, url, params);
}

/** Signs like Twilio does (used by the test client acting as Twilio). */
export function twilioSignature(authToken: string, url: string, params: Record<string, string>): string {
  return getExpectedTwilioSignature(authToken, url, params);
}
