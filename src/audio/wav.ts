/**
 * WAV (RIFF) wrapping for the batch-transcription path: OpenAI's transcription endpoint takes a file,
 * not raw samples, and WAV is the one listed format we can produce without an encoder
 * (research/protocols.md §3.3). Inbound μ-law is decoded to PCM16 first (`decodeMulaw`) rather than
 * wrapped as WAV format 7: plain PCM is the variant every decoder accepts.
 */
import { Buffer } from 'node:buffer';
import { endianness } from 'node:os';

/** Canonical header size: RIFF descriptor (12) + `fmt ` chunk (8 + 16) + `data` chunk header (8). */
export const WAV_HEADER_BYTES = 44;

const PCM_FORMAT = 1;
const CHANNELS = 1;
const BITS_PER_SAMPLE = 16;
const BYTES_PER_FRAME = (CHANNELS * BITS_PER_SAMPLE) / 8;

/**
 * A complete mono 16-bit PCM WAV file holding `samples`, as one Buffer (header, then little-endian
 * samples). Allocates the file once; meant for whole utterances, not for the per-frame path.
 *
 * @throws RangeError for a sample rate that is not a positive integer, or audio too long for RIFF's
 * 32-bit sizes (over 4 GiB).
 */
export function pcm16ToWav(samples: Int16Array, sampleRate: number): Buffer {
  if (!Number.isInteger(sampleRate) || sampleRate <= 0 || sampleRate * BYTES_PER_FRAME > 0xffff_ffff) {
    throw new RangeError(`pcm16ToWav: sampleRate must be a positive integer, got ${sampleRate}`);
  }
  const dataBytes = samples.length * BYTES_PER_FRAME;
  if (dataBytes > 0xffff_ffff - (WAV_HEADER_BYTES - 8)) {
    throw new RangeError(`pcm16ToWav: ${samples.length} samples do not fit a RIFF file`);
  }
  const file = Buffer.allocUnsafe(WAV_HEADER_BYTES + dataBytes);
  file.write('RIFF', 0, 'ascii');
  file.writeUInt32LE(WAV_HEADER_BYTES - 8 + dataBytes, 4); // everything after this field
  file.write('WAVE', 8, 'ascii');
  file.write('fmt ', 12, 'ascii');
  file.writeUInt32LE(16, 16); // size of the PCM fmt chunk body
  file.writeUInt16LE(PCM_FORMAT, 20);
  file.writeUInt16LE(CHANNELS, 22);
  file.writeUInt32LE(sampleRate, 24);
  file.writeUInt32LE(sampleRate * BYTES_PER_FRAME, 28); // byte rate
  file.writeUInt16LE(BYTES_PER_FRAME, 32); // block align
  file.writeUInt16LE(BITS_PER_SAMPLE, 34);
  file.write('data', 36, 'ascii');
  file.writeUInt32LE(dataBytes, 40);
  if (endianness() === 'LE') {
    // The samples' memory already is the file's byte order: one copy.
    file.set(new Uint8Array(samples.buffer, samples.byteOffset, dataBytes), WAV_HEADER_BYTES);
  } else {
    for (let i = 0; i < samples.length; i++) file.writeInt16LE(samples[i]!, WAV_HEADER_BYTES + 2 * i);
  }
  return file;
}
