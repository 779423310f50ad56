/**
 * Reads WAV (RIFF/WAVE) files into mono PCM16 for the test client's audio mode, which streams
 * recorded or synthesized utterances to the engine as a caller would.
 *
 * Real files vary more than `pcm16ToWav` output: recorders add `LIST`/`bext`/`fact` chunks, some put
 * the data before the format, odd-sized chunks carry a pad byte, 24-bit and float files use
 * WAVE_FORMAT_EXTENSIBLE, and tools that write to a pipe (`espeak-ng --stdout`, `sox … -t wav -`)
 * cannot seek back to fill in the sizes, so their `data` chunk claims more bytes than follow. All of
 * these are read; anything else is refused with ERR_WAV_INVALID and a message that names the problem.
 *
 * Supported encodings: PCM 8 (unsigned), 16, 24 and 32-bit; IEEE float 32 and 64-bit; G.711 μ-law and
 * A-law. Several channels are mixed down to mono by averaging them (a phone line is mono).
 */
import { Buffer } from 'node:buffer';
import { AppError } from '../errors.ts';
import { mulawToLinear } from './mulaw.ts';

/** Mono audio read from a WAV file. */
export interface WavAudio {
  /** PCM16 samples, mono (averaged when the file had several channels). */
  readonly samples: Int16Array;
  readonly sampleRateHz: number;
  /** Channels in the file, before the mixdown. */
  readonly channels: number;
  /** The file's encoding, e.g. `pcm16`, `float32`, `mulaw`. */
  readonly encoding: WavEncoding;
}

export type WavEncoding = 'pcm8' | 'pcm16' | 'pcm24' | 'pcm32' | 'float32' | 'float64' | 'mulaw' | 'alaw';

const FORMAT_PCM = 0x0001;
const FORMAT_FLOAT = 0x0003;
const FORMAT_ALAW = 0x0006;
const FORMAT_MULAW = 0x0007;
const FORMAT_EXTENSIBLE = 0xfffe;
/** The tail shared by every KSDATAFORMAT_SUBTYPE GUID; its first two bytes carry the format tag. */
const SUBFORMAT_TAIL = '000000001000800000aa00389b71';

/** Pipe writers' placeholder data sizes; any size past the end of the file is treated the same. */
const UNKNOWN_SIZE = 0xffff_ffff;

function invalid(message: string): AppError {
  return new AppError('ERR_WAV_INVALID', `not a usable WAV file: ${message}`);
}

interface Format {
  readonly tag: number;
  readonly channels: number;
  readonly sampleRateHz: number;
  readonly blockAlign: number;
  readonly bitsPerSample: number;
}

function readFormat(view: DataView, offset: number, size: number): Format {
  if (size < 16) throw invalid(`the fmt chunk is ${size} bytes, expected at least 16`);
  let tag = view.getUint16(offset, true);
  const channels = view.getUint16(offset + 2, true);
  const sampleRateHz = view.getUint32(offset + 4, true);
  const blockAlign = view.getUint16(offset + 12, true);
  const bitsPerSample = view.getUint16(offset + 14, true);
  if (tag === FORMAT_EXTENSIBLE) {
    // cbSize (2), valid bits (2), channel mask (4), then the 16-byte sub-format GUID.
    if (size < 40) throw invalid(`the extensible fmt chunk is ${size} bytes, expected 40`);
    const guid = new Uint8Array(view.buffer, view.byteOffset + offset + 24, 16);
    const tail = Buffer.from(guid.subarray(2)).toString('hex');
    if (tail !== SUBFORMAT_TAIL) throw invalid('unknown WAVE_FORMAT_EXTENSIBLE sub-format');
    tag = view.getUint16(offset + 24, true);
  }
  return { tag, channels, sampleRateHz, blockAlign, bitsPerSample };
}

/** How to turn one stored sample into PCM16, from the format; throws for what is not supported. */
function encodingOf(format: Format): { encoding: WavEncoding; bytes: number } {
  const { tag, channels, sampleRateHz, blockAlign, bitsPerSample } = format;
  // Compressed formats give block align another meaning: name the format before checking the layout.
  if (tag !== FORMAT_PCM && tag !== FORMAT_FLOAT && tag !== FORMAT_MULAW && tag !== FORMAT_ALAW) {
    throw invalid(
      `format tag 0x${tag.toString(16).padStart(4, '0')} is not supported (PCM, IEEE float, μ-law or A-law)`,
    );
  }
  if (channels === 0) throw invalid('the fmt chunk declares 0 channels');
  if (sampleRateHz === 0) throw invalid('the fmt chunk declares a sample rate of 0');
  // Samples sit in whole bytes (12-bit audio in 2 bytes, left-justified, reads as 16-bit; an extensible
  // header's valid-bits field may say less than its container, which reads the same way).
  const bytes = Math.ceil(bitsPerSample / 8);
  if (bytes === 0 || blockAlign !== channels * bytes)
    throw invalid(
      `block align ${blockAlign} does not fit ${channels} channel(s) of ${bitsPerSample}-bit samples`,
    );
  switch (tag) {
    case FORMAT_PCM:
      if (bytes === 1) return { encoding: 'pcm8', bytes };
      if (bytes === 2) return { encoding: 'pcm16', bytes };
      if (bytes === 3) return { encoding: 'pcm24', bytes };
      if (bytes === 4) return { encoding: 'pcm32', bytes };
      throw invalid(`PCM with ${bytes}-byte samples is not supported (8, 16, 24 or 32-bit)`);
    case FORMAT_FLOAT:
      if (bytes === 4 && bitsPerSample === 32) return { encoding: 'float32', bytes };
      if (bytes === 8 && bitsPerSample === 64) return { encoding: 'float64', bytes };
      throw invalid(`${bitsPerSample}-bit float is not supported (32 or 64-bit)`);
    default:
      if (bytes !== 1) throw invalid(`G.711 with ${bytes}-byte samples (expected 1)`);
      return { encoding: tag === FORMAT_MULAW ? 'mulaw' : 'alaw', bytes };
  }
}

/** G.711 A-law byte to PCM16 (the Sun reference `alaw2linear`). */
function alawToLinear(code: number): number {
  const a = code ^ 0x55;
  let t = (a & 0x0f) << 4;
  const segment = (a & 0x70) >> 4;
  if (segment === 0) t += 8;
  else {
    t += 0x108;
    if (segment > 1) t <<= segment - 1;
  }
  return a & 0x80 ? t : -t;
}

function clamp16(x: number): number {
  return x > 32767 ? 32767 : x < -32768 ? -32768 : Math.round(x);
}

/** One stored sample at `offset` as a PCM16-scaled number (not yet rounded). */
function sampleAt(view: DataView, offset: number, encoding: WavEncoding): number {
  switch (encoding) {
    case 'pcm8':
      return (view.getUint8(offset) - 128) * 256;
    case 'pcm16':
      return view.getInt16(offset, true);
    case 'pcm24':
      // Sign-extend the three bytes, then scale 24 → 16 bits.
      return (
        ((view.getUint8(offset) | (view.getUint8(offset + 1) << 8) | (view.getUint8(offset + 2) << 16)) <<
          8) /
        65536
      );
    case 'pcm32':
      return view.getInt32(offset, true) / 65536;
    case 'float32':
      return view.getFloat32(offset, true) * 32768;
    case 'float64':
      return view.getFloat64(offset, true) * 32768;
    case 'mulaw':
      return mulawToLinear(view.getUint8(offset));
    case 'alaw':
      return alawToLinear(view.getUint8(offset));
  }
}

/**
 * Parses a WAV file held in memory.
 *
 * @throws AppError `ERR_WAV_INVALID` for anything that is not RIFF/WAVE, lacks a `fmt ` or `data`
 * chunk, or uses an encoding listed as unsupported above.
 */
export function readWav(file: Uint8Array): WavAudio {
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const ascii = (offset: number) =>
    String.fromCharCode(file[offset]!, file[offset + 1]!, file[offset + 2]!, file[offset + 3]!);
  if (file.length < 12) throw invalid(`only ${file.length} bytes`);
  const riff = ascii(0);
  if (riff === 'RIFX') throw invalid('big-endian RIFX files are not supported');
  if (riff === 'RF64') throw invalid('RF64 files are not supported');
  if (riff !== 'RIFF' || ascii(8) !== 'WAVE') throw invalid('no RIFF/WAVE header');

  let format: Format | null = null;
  let data: { offset: number; size: number } | null = null;
  // The RIFF size is not trusted either (pipe writers leave a placeholder): walk the chunks to the end.
  let offset = 12;
  while (offset + 8 <= file.length) {
    const id = ascii(offset);
    const declared = view.getUint32(offset + 4, true);
    const body = offset + 8;
    const size = declared === UNKNOWN_SIZE || body + declared > file.length ? file.length - body : declared;
    if (id === 'fmt ') format = readFormat(view, body, size);
    else if (id === 'data' && data === null) data = { offset: body, size };
    // Chunks are word-aligned: an odd-sized chunk is followed by one pad byte.
    offset = body + size + (size & 1);
  }
  if (format === null) throw invalid('no fmt chunk');
  if (data === null) throw invalid('no data chunk');
  const { encoding, bytes } = encodingOf(format);

  const channels = format.channels;
  const frames = Math.floor(data.size / format.blockAlign);
  const samples = new Int16Array(frames);
  for (let frame = 0, at = data.offset; frame < frames; frame++) {
    let sum = 0;
    for (let c = 0; c < channels; c++, at += bytes) sum += sampleAt(view, at, encoding);
    samples[frame] = clamp16(sum / channels);
  }
  return { samples, sampleRateHz: format.sampleRateHz, channels, encoding };
}
