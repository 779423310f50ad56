/**
 * Speech-like audio for the Media Streams bench, built once per process: a voiced sound (a gliding
 * fundamental with falling harmonics) under a syllabic envelope, loud enough for any energy VAD
 * (the engine's, the fake realtime server's, the bare relay's fake upstream) and never silent
 * inside an utterance, so each utterance is one turn. Callers and fakes send these frames as
 * prepared base64 strings: sending audio then costs only the message around it.
 */
import { Buffer } from 'node:buffer';
import { MULAW_FRAME_BYTES } from '../../audio/framer.ts';
import { MULAW_SILENCE, encodeMulaw } from '../../audio/mulaw.ts';

/** Twilio's frame: 20 ms of 8 kHz μ-law. */
export const FRAME_MS = 20;

/** PCM16 samples of `durationMs` of voice at `sampleRate`; `seed` varies pitch and rhythm. */
export function voiceSamples(durationMs: number, sampleRate: number, seed = 0): Int16Array {
  const n = Math.round((durationMs * sampleRate) / 1000);
  const out = new Int16Array(n);
  const f0 = 115 + 12 * (seed % 4);
  const syllableHz = 3.5 + 0.4 * (seed % 3);
  const rampSamples = Math.round(0.02 * sampleRate);
  let phase = 0;
  for (let i = 0; i < n; i++) {
    const t = i / sampleRate;
    // Pitch glides ±10 % over the utterance, as intonation does.
    phase += (2 * Math.PI * f0 * (1 + 0.1 * Math.sin(2 * Math.PI * 0.7 * t))) / sampleRate;
    let v = 0;
    for (let k = 1; k <= 6; k++) v += Math.sin(k * phase) / k;
    // Syllables: the level swings between 45 % and 100 %, never down to a pause.
    const envelope = 0.725 + 0.275 * Math.sin(2 * Math.PI * syllableHz * t);
    const ramp = Math.min(1, i / rampSamples, (n - 1 - i) / rampSamples);
    out[i] = Math.round(7000 * v * envelope * ramp);
  }
  return out;
}

/** `durationMs` of voice as base64 μ-law frames of 20 ms (the last one padded with silence). */
export function voiceFrames(durationMs: number, seed = 0): string[] {
  const samples = voiceSamples(durationMs, 8000, seed);
  const frames = Math.ceil(samples.length / MULAW_FRAME_BYTES);
  const mulaw = new Uint8Array(frames * MULAW_FRAME_BYTES).fill(MULAW_SILENCE);
  encodeMulaw(samples, mulaw);
  const out: string[] = [];
  for (let f = 0; f < frames; f++) {
    out.push(Buffer.from(mulaw.buffer, f * MULAW_FRAME_BYTES, MULAW_FRAME_BYTES).toString('base64'));
  }
  return out;
}

/** One 20 ms frame of μ-law digital silence, base64. */
export const SILENCE_FRAME: string = Buffer.alloc(MULAW_FRAME_BYTES, MULAW_SILENCE).toString('base64');
