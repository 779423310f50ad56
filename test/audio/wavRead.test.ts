import { describe, expect, test } from 'vitest';
import { linearToMulaw } from '../../src/audio/mulaw.ts';
import { pcm16ToWav } from '../../src/audio/wav.ts';
import { readWav } from '../../src/audio/wavRead.ts';
import { AppError } from '../../src/errors.ts';

interface FmtFields {
  tag: number;
  channels?: number;
  rate?: number;
  bits: number;
  blockAlign?: number;
  /** WAVE_FORMAT_EXTENSIBLE with this sub-format tag. */
  extensibleTag?: number;
}

function fmtChunk(f: FmtFields): Buffer {
  const channels = f.channels ?? 1;
  const rate = f.rate ?? 8000;
  const blockAlign = f.blockAlign ?? (channels * f.bits) / 8;
  const body = Buffer.alloc(f.extensibleTag === undefined ? 16 : 40);
  body.writeUInt16LE(f.extensibleTag === undefined ? f.tag : 0xfffe, 0);
  body.writeUInt16LE(channels, 2);
  body.writeUInt32LE(rate, 4);
  body.writeUInt32LE(rate * blockAlign, 8);
  body.writeUInt16LE(blockAlign, 12);
  body.writeUInt16LE(f.bits, 14);
  if (f.extensibleTag !== undefined) {
    body.writeUInt16LE(22, 16); // cbSize
    body.writeUInt16LE(f.bits, 18); // valid bits
    body.writeUInt32LE(channels === 1 ? 0x4 : 0x3, 20); // channel mask
    body.writeUInt16LE(f.extensibleTag, 24);
    Buffer.from('000000001000800000aa00389b71', 'hex').copy(body, 26);
  }
  return chunk('fmt ', body);
}

function chunk(id: string, body: Buffer, declaredSize = body.length): Buffer {
  const header = Buffer.alloc(8);
  header.write(id, 0, 'ascii');
  header.writeUInt32LE(declaredSize, 4);
  return Buffer.concat([header, body, Buffer.alloc(body.length & 1)]);
}

function riff(...chunks: Buffer[]): Buffer {
  const body = Buffer.concat(chunks);
  const header = Buffer.alloc(12);
  header.write('RIFF', 0, 'ascii');
  header.writeUInt32LE(4 + body.length, 4);
  header.write('WAVE', 8, 'ascii');
  return Buffer.concat([header, body]);
}

const SAMPLES = [0, 1000, -1000, 32767, -32768, 12345];

function encode(bits: number, write: (b: Buffer, i: number, s: number) => void): Buffer {
  const data = Buffer.alloc((SAMPLES.length * bits) / 8);
  SAMPLES.forEach((s, i) => write(data, i, s));
  return data;
}

function readsBack(wav: Buffer) {
  const audio = readWav(wav);
  return { ...audio, samples: [...audio.samples] };
}

function expectWavError(wav: Uint8Array, message: RegExp): void {
  let error: unknown;
  try {
    readWav(wav);
  } catch (err) {
    error = err;
  }
  expect(error).toBeInstanceOf(AppError);
  expect((error as AppError).code).toBe('ERR_WAV_INVALID');
  expect((error as AppError).message).toMatch(message);
}

describe('readWav', () => {
  test('reads what pcm16ToWav writes', () => {
    const audio = readWav(pcm16ToWav(Int16Array.from(SAMPLES), 16_000));
    expect(audio).toMatchObject({ sampleRateHz: 16_000, channels: 1, encoding: 'pcm16' });
    expect([...audio.samples]).toEqual(SAMPLES);
  });

  test('PCM 8-bit is unsigned, scaled to 16 bits', () => {
    const data = Buffer.from([128, 255, 0, 192]);
    const audio = readsBack(riff(fmtChunk({ tag: 1, bits: 8 }), chunk('data', data)));
    expect(audio.encoding).toBe('pcm8');
    expect(audio.samples).toEqual([0, 127 * 256, -32768, 64 * 256]);
  });

  test('12-bit PCM (left-justified in two bytes) reads as 16-bit', () => {
    const data = encode(16, (b, i, s) => b.writeInt16LE(s & ~0xf, i * 2));
    const audio = readsBack(riff(fmtChunk({ tag: 1, bits: 12, blockAlign: 2 }), chunk('data', data)));
    expect(audio.samples).toEqual(SAMPLES.map((s) => s & ~0xf));
  });

  test('PCM 24 and 32-bit keep the top 16 bits', () => {
    const pcm24 = encode(24, (b, i, s) => b.writeIntLE(s * 256 + 0x7f, i * 3, 3));
    expect(readsBack(riff(fmtChunk({ tag: 1, bits: 24 }), chunk('data', pcm24))).samples).toEqual(SAMPLES);
    const pcm32 = encode(32, (b, i, s) => b.writeInt32LE(s * 65536 + 0x7fff, i * 4));
    const audio = readsBack(riff(fmtChunk({ tag: 1, bits: 32 }), chunk('data', pcm32)));
    expect(audio.encoding).toBe('pcm32');
    expect(audio.samples).toEqual(SAMPLES);
  });

  test('IEEE float 32 and 64-bit, clipped to the 16-bit range', () => {
    const values = [0, 0.5, -0.5, 1, -1, 1.5, -2];
    const expected = [0, 16384, -16384, 32767, -32768, 32767, -32768];
    const f32 = Buffer.alloc(values.length * 4);
    values.forEach((v, i) => f32.writeFloatLE(v, i * 4));
    const audio = readsBack(riff(fmtChunk({ tag: 3, bits: 32 }), chunk('data', f32)));
    expect(audio.encoding).toBe('float32');
    expect(audio.samples).toEqual(expected);
    const f64 = Buffer.alloc(values.length * 8);
    values.forEach((v, i) => f64.writeDoubleLE(v, i * 8));
    expect(readsBack(riff(fmtChunk({ tag: 3, bits: 64 }), chunk('data', f64))).samples).toEqual(expected);
  });

  test('G.711 μ-law (format 7) and A-law (format 6)', () => {
    const mulaw = Buffer.from(SAMPLES.map((s) => linearToMulaw(s)));
    const audio = readsBack(riff(fmtChunk({ tag: 7, bits: 8 }), chunk('data', mulaw)));
    expect(audio.encoding).toBe('mulaw');
    // μ-law keeps 14 bits: within one quantisation step of the original.
    audio.samples.forEach((s, i) => expect(Math.abs(s - SAMPLES[i]!)).toBeLessThanOrEqual(1024));
    expect(audio.samples[0]).toBe(0);
    // A-law reference values (ITU-T G.711): 0xD5 → +8, 0x55 → -8, 0xAA → +32256, 0x2A → -32256.
    const alaw = readsBack(
      riff(fmtChunk({ tag: 6, bits: 8 }), chunk('data', Buffer.from([0xd5, 0x55, 0xaa, 0x2a]))),
    );
    expect(alaw.encoding).toBe('alaw');
    expect(alaw.samples).toEqual([8, -8, 32256, -32256]);
  });

  test('WAVE_FORMAT_EXTENSIBLE takes its format from the sub-format GUID', () => {
    const pcm24 = encode(24, (b, i, s) => b.writeIntLE(s * 256, i * 3, 3));
    const audio = readsBack(riff(fmtChunk({ tag: 1, bits: 24, extensibleTag: 1 }), chunk('data', pcm24)));
    expect(audio).toMatchObject({ encoding: 'pcm24', sampleRateHz: 8000 });
    expect(audio.samples).toEqual(SAMPLES);
    const f32 = Buffer.alloc(8);
    f32.writeFloatLE(0.25, 0);
    f32.writeFloatLE(-0.25, 4);
    expect(
      readsBack(riff(fmtChunk({ tag: 3, bits: 32, extensibleTag: 3 }), chunk('data', f32))).samples,
    ).toEqual([8192, -8192]);
  });

  test('skips LIST and other chunks, honours the pad byte after an odd-sized chunk, and finds data before fmt', () => {
    const data = encode(16, (b, i, s) => b.writeInt16LE(s, i * 2));
    const list = chunk('LIST', Buffer.from('INFOISFT\x05\x00\x00\x00sox!\x00', 'latin1')); // odd size: 17
    expect(list.length).toBe(8 + 17 + 1);
    const wav = riff(
      list,
      chunk('data', data),
      chunk('fact', Buffer.alloc(4)),
      fmtChunk({ tag: 1, bits: 16 }),
    );
    expect(readsBack(wav).samples).toEqual(SAMPLES);
  });

  test('a data chunk whose size was never filled in (written to a pipe) runs to the end of the file', () => {
    const data = encode(16, (b, i, s) => b.writeInt16LE(s, i * 2));
    for (const declared of [0xffffffff, 0x7ffff000]) {
      const wav = riff(fmtChunk({ tag: 1, bits: 16, rate: 22_050 }), chunk('data', data, declared));
      expect(readsBack(wav)).toMatchObject({ samples: SAMPLES, sampleRateHz: 22_050 });
    }
    // And a trailing half sample is ignored.
    const odd = riff(fmtChunk({ tag: 1, bits: 16 }), chunk('data', data, 0xffffffff));
    expect(readWav(Buffer.concat([odd, Buffer.from([7])])).samples).toHaveLength(SAMPLES.length);
  });

  test('stereo (and more channels) is mixed down to mono by averaging', () => {
    const frames = [
      [1000, 3000],
      [-32768, -32768],
      [32767, -32768],
    ];
    const data = Buffer.alloc(frames.length * 4);
    frames.forEach(([l, r], i) => {
      data.writeInt16LE(l!, i * 4);
      data.writeInt16LE(r!, i * 4 + 2);
    });
    const audio = readsBack(riff(fmtChunk({ tag: 1, bits: 16, channels: 2 }), chunk('data', data)));
    expect(audio).toMatchObject({ channels: 2, samples: [2000, -32768, 0] });
    const f32 = Buffer.alloc(6 * 4);
    [0.5, 0.25, 0, 0, 0, -0.75].forEach((v, i) => f32.writeFloatLE(v, i * 4));
    expect(readsBack(riff(fmtChunk({ tag: 3, bits: 32, channels: 3 }), chunk('data', f32))).samples).toEqual([
      8192, -8192,
    ]);
  });

  test('refuses what it cannot read, naming the problem', () => {
    const data = chunk('data', Buffer.alloc(4));
    expectWavError(Buffer.from('RIFF'), /only 4 bytes/);
    expectWavError(Buffer.from('ID3\x03\x00\x00\x00\x00\x00\x00\x00\x00mp3 frames'), /no RIFF\/WAVE header/);
    const rifx = riff(fmtChunk({ tag: 1, bits: 16 }), data);
    rifx.write('RIFX', 0, 'ascii');
    expectWavError(rifx, /RIFX/);
    expectWavError(riff(data), /no fmt chunk/);
    expectWavError(riff(fmtChunk({ tag: 1, bits: 16 })), /no data chunk/);
    expectWavError(riff(fmtChunk({ tag: 2, bits: 4, blockAlign: 256 }), data), /format tag 0x0002/); // MS ADPCM
    expectWavError(riff(fmtChunk({ tag: 0x55, bits: 16 }), data), /format tag 0x0055/); // MP3
    expectWavError(riff(fmtChunk({ tag: 3, bits: 16 }), data), /16-bit float/);
    expectWavError(riff(fmtChunk({ tag: 1, bits: 48 }), data), /6-byte samples/);
    expectWavError(riff(fmtChunk({ tag: 1, bits: 16, channels: 0, blockAlign: 2 }), data), /0 channels/);
    expectWavError(riff(fmtChunk({ tag: 1, bits: 16, rate: 0 }), data), /sample rate of 0/);
    expectWavError(riff(fmtChunk({ tag: 1, bits: 16, blockAlign: 3 }), data), /block align 3/);
    expectWavError(riff(fmtChunk({ tag: 1, bits: 16, blockAlign: 1 }), data), /block align 1/);
    expectWavError(riff(fmtChunk({ tag: 1, bits: 0, blockAlign: 2 }), data), /0-bit/);
    expectWavError(riff(chunk('fmt ', Buffer.alloc(12)), data), /fmt chunk is 12 bytes/);
    const guid = fmtChunk({ tag: 1, bits: 16, extensibleTag: 1 });
    guid[8 + 30] = 0x99;
    expectWavError(riff(guid, data), /sub-format/);
    expectWavError(riff(fmtChunk({ tag: 7, bits: 16 }), data), /G.711 with 2-byte samples/);
  });
});
