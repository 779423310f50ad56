/**
 * 8 kHz G.711 μ-law → 16-bit PCM WAV, for transcription endpoints that take a file. Decoded to
 * linear PCM rather than wrapped as a format-7 WAV because not every OpenAI-compatible server reads
 * μ-law WAVs.
 */
import { decodeMulaw } from '../../audio/mulaw.ts';
import { pcm16ToWav } from '../../audio/wav.ts';

/** A mono 16-bit PCM WAV file of the μ-law samples (8000 Hz unless told otherwise). */
export function mulawToWav(mulaw: Uint8Array, sampleRate = 8000): Uint8Array {
  const pcm = new Int16Array(mulaw.length);
  decodeMulaw(mulaw, pcm);
  return pcm16ToWav(pcm, sampleRate);
}
