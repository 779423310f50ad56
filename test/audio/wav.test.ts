import { describe, expect, test } from 'vitest';
import { WAV_HEADER_BYTES, pcm16ToWav } from '../../src/audio/wav.ts';

describe('pcm16ToWav', () => {
  test('writes the canonical 44-byte RIFF/WAVE header for mono 16-bit PCM', () => {
    const wav = pcm16ToWav(new Int16Array(8_000), 8_000);
    expect(wav).toHaveLength(WAV_HEADER_BYTES + 16_000);
    expect(wav.toString('ascii', 0, 4)).toBe('RIFF');
    expect(wav.readUInt32LE(4)).toBe(36 + 16_000);
    expect(wav.toString('ascii', 8, 12)).toBe('WAVE');
    expect(wav.toString('ascii', 12, 16)).toBe('fmt ');
    expect(wav.readUInt32LE(16)).toBe(16);
    expect(wav.readUInt16LE(20)).toBe(1); // PCM
    expect(wav.readUInt16LE(22)).toBe(1); // mono
    expect(wav.readUInt32LE(24)).toBe(8_000);
    expect(wav.readUInt32LE(28)).toBe(16_000); // bytes per second
    expect(wav.readUInt16LE(32)).toBe(2); // block align
    expect(wav.readUInt16LE(34)).toBe(16); // bits per sample
    expect(wav.toString('ascii', 36, 40)).toBe('data');
    expect(wav.readUInt32LE(40)).toBe(16_000);
  });

  test('the sample rate is carried through to both rate fields', () => {
    const wav = pcm16ToWav(new Int16Array(3), 24_000);
    expect(wav.readUInt32LE(24)).toBe(24_000);
    expect(wav.readUInt32LE(28)).toBe(48_000);
    expect(wav.readUInt32LE(40)).toBe(6);
    expect(wav.readUInt32LE(4)).toBe(42);
  });

  test('samples follow the header, little-endian, including those of a view at an offset', () => {
    const backing = new Int16Array([111, -32768, 32767, -1, 258, 999]);
    const wav = pcm16ToWav(backing.subarray(1, 5), 8_000);
    expect(wav).toHaveLength(WAV_HEADER_BYTES + 8);
    expect([0, 1, 2, 3].map((i) => wav.readInt16LE(WAV_HEADER_BYTES + 2 * i))).toEqual([
      -32768, 32767, -1, 258,
    ]);
    expect([...wav.subarray(WAV_HEADER_BYTES + 6)]).toEqual([0x02, 0x01]);
  });

  test('no audio is still a valid, empty file', () => {
    const wav = pcm16ToWav(new Int16Array(0), 8_000);
    expect(wav).toHaveLength(WAV_HEADER_BYTES);
    expect(wav.readUInt32LE(4)).toBe(36);
    expect(wav.readUInt32LE(40)).toBe(0);
  });

  test('a sample rate that is not a positive integer is refused', () => {
    for (const rate of [0, -8_000, 8_000.5, Number.NaN, 2 ** 32]) {
      expect(() => pcm16ToWav(new Int16Array(1), rate)).toThrow(RangeError);
    }
  });
});
