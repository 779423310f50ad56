/** base64ByteLength: what a base64 string carries, without decoding it. */
import fc from 'fast-check';
import { expect, test } from 'vitest';
import { base64ByteLength } from '../src/base64.ts';

test('matches the decoded length for any bytes, padded or not', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 400 }), (bytes) => {
      const padded = Buffer.from(bytes).toString('base64');
      expect(base64ByteLength(padded)).toBe(bytes.length);
      expect(base64ByteLength(padded.replace(/=+$/, ''))).toBe(bytes.length);
    }),
  );
  // One Twilio frame: 160 bytes in 216 characters, two of them padding.
  expect(base64ByteLength(Buffer.alloc(160).toString('base64'))).toBe(160);
});
