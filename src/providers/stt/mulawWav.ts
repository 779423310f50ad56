/**
 * 8 kHz G.711 μ-law → 16-bit PCM WAV, for transcription endpoints that take a file. Decoded to
 * linear PCM rather than wrapped as a format-7 WAV because not every OpenAI-compatible server reads
 * μ-law WAVs. A local table keeps this module free of src/audio until that settles.
 */

// Classic G.711 decode: invert, then (((mantissa << 3) + 0x84) << exponent) - 0x84, signed.
const DECODE = new Int16Array(256);
for (let byte = 0; byte < 256; byte++) {
  const u = ~byte & 0xff;
  const exponent = (u >> 4) & 0x07;
  const magnitude = (((u & 0x0f) << 3) + 0x84) << exponent;
  DECODE[byte] = u & 0x80 ? 0x84 - magnitude : magnitude - 0x84;
}

const HEADER_BYTES = 44;

/** A mono 16-bit PCM WAV file of the μ-law samples (8000 Hz unless told otherwise). */
export function mulawToWav(mulaw: Uint8Array, sampleRate = 8000): Uint8Array {
  const dataBytes = mulaw.length * 2;
  const wav = new Uint8Array(HEADER_BYTES + dataBytes);
  const view = new DataView(wav.buffer);
  const ascii = (offset: number, text: string) => {
    for (let i = 0; i < text.length; i++) wav[offset + i] = text.charCodeAt(i);
  };
  ascii(0, 'RIFF');
  view.setUint32(4, 36 + dataBytes, true);
  ascii(8, 'WAVE');
  ascii(12, 'fmt ');
  view.setUint32(16, 16, true); // fmt chunk size
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 1, true); // mono
  view.setUint32(24, sampleRate, true);
  view.setUint32(28, sampleRate * 2, true); // byte rate
  view.setUint16(32, 2, true); // block align
  view.setUint16(34, 16, true); // bits per sample
  ascii(36, 'data');
  view.setUint32(40, dataBytes, true);
  for (let i = 0; i < mulaw.length; i++) {
    view.setInt16(HEADER_BYTES + i * 2, DECODE[mulaw[i]!]!, true);
  }
  return wav;
}
