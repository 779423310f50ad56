/**
 * Base64 arithmetic without decoding, for the paths that carry audio as base64 end to end (Twilio's
 * media frames in, the realtime STT's appends out).
 */

/** Bytes carried by a base64 string (padded or not), without decoding it. */
export function base64ByteLength(b64: string): number {
  const n = b64.length;
  if (n === 0) return 0;
  const padding = b64.charCodeAt(n - 1) === 61 ? (b64.charCodeAt(n - 2) === 61 ? 2 : 1) : 0;
  return ((n * 3) >> 2) - padding;
}
