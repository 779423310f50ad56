/** One call's Twilio side without sockets or timers: numbering, pacing, marks and clear on a given clock. */
import { describe, expect, test } from 'vitest';
import { linearToMulaw } from '../../src/audio/mulaw.ts';
import { prepareUtterance } from '../../src/cli/mediaCall.ts';
import { createTwilioStreamSimulator } from '../../src/cli/twilioStreamSimulator.ts';
import { tone } from '../audio/signals.ts';

type Json = Record<string, unknown>;

const SID = `MZ${'3'.repeat(32)}`;

function toneMulaw(ms: number, hz: number): Buffer {
  return Buffer.from(Array.from(tone(hz, 8000, ms * 8, 8000), (s) => linearToMulaw(s)));
}

describe('createTwilioStreamSimulator', () => {
  const open = (keepPlayedAudio = true) => {
    const sent: Json[] = [];
    /** While true the socket is closing: frames cannot go out. */
    const link = { closing: false };
    const sim = createTwilioStreamSimulator({
      callSid: `CA${'1'.repeat(32)}`,
      accountSid: `AC${'2'.repeat(32)}`,
      streamSid: SID,
      send: (frame) => {
        if (link.closing) return false;
        sent.push(JSON.parse(frame) as Json);
        return true;
      },
      keepPlayedAudio,
    });
    sim.open(1000);
    return { sim, sent, link };
  };
  const audio = (ms: number) =>
    JSON.stringify({
      event: 'media',
      streamSid: SID,
      media: { payload: toneMulaw(ms, 440).toString('base64') },
    });
  const mark = (name: string) => JSON.stringify({ event: 'mark', streamSid: SID, mark: { name } });
  const echoes = (sent: Json[]) =>
    sent.filter((f) => f['event'] === 'mark').map((f) => (f['mark'] as Json)['name']);

  test('frames follow the stream clock: a late tick catches up, numbering has no gaps', () => {
    const { sim, sent } = open();
    sim.tick(1019);
    expect(sent.map((f) => f['event'])).toEqual(['connected', 'start']);
    sim.tick(1100); // five frames were due (at +20, +40 … +100)
    sim.dtmf('7');
    sim.tick(1100.5);
    sim.tick(1120);
    const frames = sent.slice(2);
    expect(frames.map((f) => f['sequenceNumber'])).toEqual(['2', '3', '4', '5', '6', '7', '8']);
    expect(frames.map((f) => f['event'])).toEqual([
      'media',
      'media',
      'media',
      'media',
      'media',
      'dtmf',
      'media',
    ]);
    const mediaFrames = frames.filter((f) => f['event'] === 'media').map((f) => f['media'] as Json);
    expect(mediaFrames.map((m) => m['chunk'])).toEqual(['1', '2', '3', '4', '5', '6']);
    expect(mediaFrames.map((m) => m['timestamp'])).toEqual(['0', '20', '40', '60', '80', '100']);
    expect(sim.nextFrameAtMs()).toBe(1140);
    expect(sim.stats.framesSent).toBe(6);
  });

  test('counts only the frames that went out: none once the socket is closing', () => {
    const { sim, sent, link } = open();
    sim.tick(1060); // 3 frames
    sim.receive(mark('a'), 1060); // nothing playing: echoed at once
    link.closing = true;
    sim.tick(1120); // 3 more were due, and could not be sent
    sim.receive(mark('b'), 1120);
    expect(sent.filter((f) => f['event'] === 'media')).toHaveLength(3);
    expect(echoes(sent)).toEqual(['a']);
    expect(sim.stats).toMatchObject({ framesSent: 3, marksReceived: 2, marksEchoed: 1 });
  });

  test('an utterance replaces the silence frame by frame and records when its speech went out', () => {
    const { sim, sent } = open();
    const utterance = prepareUtterance('audio', 'tone', tone(500, 12_000, 1600, 16_000), 16_000);
    const progress = sim.speak(utterance);
    sim.tick(1060); // 3 frames
    expect(progress).toMatchObject({ firstFrameAtMs: 1060, speechStartAtMs: 1060, doneAtMs: null });
    sim.tick(1200); // 4 more: the utterance's last 2, then silence
    expect(progress).toMatchObject({ speechEndAtMs: 1200, doneAtMs: 1200 });
    const payloads = sent
      .slice(2)
      .map((f) => Buffer.from((f['media'] as Json)['payload'] as string, 'base64'));
    expect(payloads.slice(0, 5)).toEqual(
      [0, 1, 2, 3, 4].map((i) => utterance.mulaw.subarray(i * 160, (i + 1) * 160)),
    );
    expect(payloads.slice(5).every((p) => p.every((b) => b === 0xff))).toBe(true);
  });

  test('a mark is echoed when the audio queued before it has played, not before', () => {
    const { sim, sent } = open();
    sim.receive(audio(100), 1000);
    sim.receive(audio(100), 1010); // queued behind the first: plays 1100–1200
    sim.receive(mark('a'), 1010);
    sim.tick(1199);
    expect(echoes(sent)).toEqual([]);
    sim.tick(1200);
    expect(echoes(sent)).toEqual(['a']);
    // Nothing playing: echoed at once.
    sim.receive(mark('b'), 1300);
    expect(echoes(sent)).toEqual(['a', 'b']);
    expect(sim.stats).toMatchObject({ marksReceived: 2, marksEchoed: 2, bytesReceived: 1600 });
  });

  test('clear drops the unplayed audio and sends back every pending mark at once, in order', () => {
    const { sim, sent } = open();
    sim.receive(audio(100), 1000);
    sim.receive(audio(1000), 1200);
    sim.receive(mark('b'), 1200);
    sim.receive(mark('c'), 1200);
    expect(echoes(sent)).toEqual([]);
    const cleared = sim.receive(JSON.stringify({ event: 'clear', streamSid: SID }), 1450);
    expect(cleared).toEqual({ kind: 'clear', droppedMs: 750, marksFlushed: 2 });
    expect(echoes(sent)).toEqual(['b', 'c']);
    expect(sim.playEndAtMs).toBe(1450);
    // Heard: 0–100 ms, silence, then 200–450 ms of the long reply.
    const heard = sim.playedAudio();
    expect(heard).toHaveLength(450 * 8);
    const nonSilent = (from: number, to: number) =>
      heard.subarray(from * 8, to * 8).filter((s) => s !== 0).length;
    expect(nonSilent(0, 100)).toBeGreaterThan(790);
    expect(nonSilent(100, 200)).toBe(0);
    expect(nonSilent(200, 450)).toBeGreaterThan(1950);
  });

  test('frames Twilio would refuse are reported, not acted on', () => {
    const { sim } = open();
    const other = JSON.stringify({ event: 'media', streamSid: 'MZother', media: { payload: 'AAAA' } });
    expect(sim.receive('{oops', 1000)).toEqual({ kind: 'invalid', reason: 'not JSON' });
    expect(sim.receive(other, 1000)).toMatchObject({ kind: 'invalid', reason: /another streamSid/ });
    expect(sim.receive(JSON.stringify({ event: 'speak' }), 1000)).toMatchObject({
      reason: /unknown event "speak"/,
    });
    expect(
      sim.receive(JSON.stringify({ event: 'media', streamSid: SID, media: { payload: '!!' } }), 1000),
    ).toMatchObject({ reason: 'media without a base64 payload' });
    expect(sim.stats.bytesReceived).toBe(0);
    expect(sim.receive(JSON.stringify({ event: 'switchboard.x', a: 1 }), 1000)).toEqual({
      kind: 'trace',
      event: 'switchboard.x',
      frame: { event: 'switchboard.x', a: 1 },
    });
  });
});
