import { spawnSync } from 'node:child_process';
import { describe, expect, test } from 'vitest';
import { formatAudioReport } from '../../src/bench/audio/audioReport.ts';
import { parseStreamTwiml } from '../../src/bench/audio/mediaCallers.ts';
import type { AudioArmResult, AudioLevelResult } from '../../src/bench/audio/audioReport.ts';
import {
  compare,
  DEFAULT_AUDIO_SETTINGS,
  runAudioBench,
  TRACE_EVERY,
} from '../../src/bench/audio/runAudioBench.ts';
import { audioSettingsFrom } from '../../src/cli/benchAudio.ts';

describe('parseStreamTwiml', () => {
  test('reads the Stream URL and its parameters, XML entities decoded', () => {
    const twiml =
      '<?xml version="1.0" encoding="UTF-8"?><Response><Connect action="https://h/a">' +
      '<Stream url="wss://h/twilio/media/t0k&amp;en"><Parameter name="token" value="a&lt;b"/>' +
      '<Parameter value="2" name="n"/></Stream></Connect></Response>';
    expect(parseStreamTwiml(twiml)).toEqual({
      url: 'wss://h/twilio/media/t0k&en',
      parameters: { token: 'a<b', n: '2' },
    });
    expect(parseStreamTwiml('<Response><Connect><Stream url="ws://h/m"/></Connect></Response>')).toEqual({
      url: 'ws://h/m',
      parameters: {},
    });
    expect(
      parseStreamTwiml('<Response><Connect><ConversationRelay url="wss://h/r"/></Connect></Response>'),
    ).toBeNull();
  });
});

describe('rounds', () => {
  /**
   * An arm's run with the given CPU per call per level and the levels it sustained (the only figures
   * the comparison reads).
   */
  const run = (
    arm: 'relay' | 'engine',
    round: number,
    perCall: Record<number, number>,
    sustained: readonly number[],
  ): AudioArmResult => ({
    arm,
    round,
    ran: true,
    note: null,
    levels: Object.entries(perCall).map(
      ([calls, cpuPerCallPct]) =>
        ({
          calls: Number(calls),
          cpuPerCallPct,
          sustained: sustained.includes(Number(calls)),
        }) as unknown as AudioLevelResult,
    ),
    sustainedCalls: sustained.length === 0 ? null : Math.max(...sustained),
    upstreamTls: false,
  });

  test("the comparison takes each arm's median per level and keeps every round's own ratio", () => {
    const c = compare([
      run('relay', 1, { 150: 0.2, 300: 0.2 }, [150, 300]),
      run('engine', 1, { 150: 0.3, 300: 0.22 }, [150, 300]),
      run('relay', 2, { 150: 0.1, 300: 0.25 }, [150, 300]),
      run('engine', 2, { 150: 0.2, 300: 0.2 }, [150]),
      run('relay', 3, { 150: 0.15, 300: 0.2 }, [150, 300]),
      run('engine', 3, { 150: 0.25, 300: 0.24 }, [150, 300]),
    ])!;
    expect(c.cpuPerCallRatio.map((l) => l.calls)).toEqual([150, 300]);
    const [low, high] = c.cpuPerCallRatio;
    expect(low!.relayCpuPerCallPct).toBeCloseTo(0.15);
    expect(low!.engineCpuPerCallPct).toBeCloseTo(0.25);
    expect(low!.ratio).toBeCloseTo(0.25 / 0.15);
    expect(low!.rounds).toBe(3);
    expect(low!.roundRatios.map((r) => Number(r.toFixed(3)))).toEqual([1.5, 2, 1.667]);
    expect(high!.ratio).toBeCloseTo(0.22 / 0.2);
    // Sustained in every round: the engine's second round managed only 150.
    expect(c.sustained).toEqual({ engine: 150, relay: 300 });
  });

  test('one round compares the two runs as they are', () => {
    const c = compare([run('relay', 1, { 150: 0.2 }, [150]), run('engine', 1, { 150: 0.3 }, [])])!;
    expect(c.cpuPerCallRatio).toEqual([
      {
        calls: 150,
        ratio: expect.closeTo(1.5, 6) as number,
        rounds: 1,
        engineCpuPerCallPct: 0.3,
        relayCpuPerCallPct: 0.2,
        roundRatios: [expect.closeTo(1.5, 6) as number],
      },
    ]);
    expect(c.sustained).toEqual({ engine: null, relay: 150 });
    expect(compare([run('relay', 1, { 150: 0.2 }, [150])])).toBeNull();
  });

  test('a level counts as sustained only if every round sustained it, whatever each round reached', () => {
    // Noisy rounds: the relay's second round failed 150 calls yet held 200; the engine's first held
    // 250 but failed 200. No round's best is what every round managed.
    const levels = { 150: 0.4, 200: 0.37, 250: 0.34 };
    const c = compare([
      run('relay', 1, levels, [150, 200]),
      run('engine', 1, levels, [150, 250]),
      run('relay', 2, levels, [200]),
      run('engine', 2, levels, [150, 200, 250]),
      run('relay', 3, levels, [150, 200]),
      run('engine', 3, levels, [150, 200]),
    ])!;
    expect(c.sustained).toEqual({ engine: 150, relay: 200 });
    expect(
      compare([run('relay', 1, levels, [150]), run('relay', 2, levels, [200]), run('engine', 1, levels, [])])!
        .sustained,
    ).toEqual({ engine: null, relay: null });
  });

  test('--rounds above 1 runs every listed level in every round, without climbing', () => {
    const one = audioSettingsFrom(['--calls', '150,300'])!.settings;
    expect(one).toMatchObject({ rounds: 1, climb: false, keepGoing: false });
    expect(audioSettingsFrom([])!.settings).toMatchObject({ rounds: 1, climb: true });
    expect(audioSettingsFrom(['--rounds', '3'])!.settings).toMatchObject({
      rounds: 3,
      climb: false,
      keepGoing: true,
    });
    expect(() => audioSettingsFrom(['--rounds', 'many'])).toThrow(/--rounds/);
  });
});

describe('runAudioBench', () => {
  test('3 callers for 2 s against the bare relay: every figure measured, frames on time', async () => {
    const result = await runAudioBench({
      ...DEFAULT_AUDIO_SETTINGS,
      arms: ['relay'],
      levels: [3],
      climb: false,
      keepGoing: true,
      durationS: 2,
      warmupS: 1,
      // Every caller's utterance ends, and its reply starts, inside the window.
      firstSpeechMs: [200, 300],
      pin: false,
    });

    expect(result.arms).toHaveLength(1);
    const arm = result.arms[0]!;
    expect(arm.ran).toBe(true);
    expect(arm.levels).toHaveLength(1);
    const level = arm.levels[0]!;
    const c = level.callers;
    expect(c.errors).toEqual({});
    expect(c.live).toBe(3);
    expect(level.server.liveCalls).toBe(3);
    // 3 callers × 50 frames/s over a window of about 2 s.
    expect(c.framesSent).toBeGreaterThan(3 * 50 * 1.8);
    expect(c.framesSent).toBeLessThan(3 * 50 * 2.6);
    // Pacing: the frame count above, and how late the shared tick and the frames were. Lateness is
    // the machine's figure as much as the generator's: on a quiet machine the median tick is on time
    // and 2–3 of ~300 frames are late, but CI shares the two cores with parallel test files, where
    // one stall makes every caller's next frames late (10, 31 and 138 of ~300 seen in CI) and the
    // median tick was once 4.4 ms late. A pacer that drifts or aims at the wrong time makes nearly
    // every frame and tick late by more than the late-frame threshold (10 ms), so only that fails.
    expect(c.tickLatenessMs.p50).toBeLessThan(10);
    expect(c.lateFrames).toBeLessThan(c.framesSent / 2);
    // The relay's fake upstream answers 200 ms of silence + 300 ms after the utterance.
    expect(c.speechEndToFirstAudioMs.n).toBeGreaterThan(0);
    expect(c.speechEndToFirstAudioMs.p50).toBeGreaterThanOrEqual(500);
    expect(c.outboundFrames).toBeGreaterThan(0);
    expect(c.outboundJitterMs.n).toBeGreaterThan(0);
    for (const value of [
      level.cpuPerCallPct,
      level.server.cpuCorePct,
      level.server.loopDelayMs.p99,
      level.server.eventLoopUtilization,
      level.memory.rssPerCallBytes,
      level.memory.heapPerCallBytes,
      level.generatorCpuCorePct,
      level.fakesCpuCorePct,
      c.speechEndToFirstAudioMs.p99,
      c.outboundJitterMs.p50,
      c.outboundJitterMs.p99,
    ]) {
      expect(typeof value).toBe('number');
      expect(Number.isFinite(value)).toBe(true);
    }
    expect(level.cpuPerCallPct).toBeGreaterThan(0);
    expect(formatAudioReport(result)).toContain('Bare relay');
    expect(arm.upstreamTls).toBe(false);
  }, 40_000);

  test.skipIf(spawnSync('openssl', ['version']).status !== 0)(
    '--tls: both servers reach their upstream over TLS and the calls are answered',
    async () => {
      const result = await runAudioBench({
        ...DEFAULT_AUDIO_SETTINGS,
        arms: ['relay', 'engine'],
        company: 'cold',
        levels: [3],
        climb: false,
        keepGoing: true,
        durationS: 4,
        warmupS: 1,
        firstSpeechMs: [200, 300],
        pin: false,
        tls: true,
      });
      expect(result.config['tls']).toBe(true);
      expect(formatAudioReport(result)).toContain(
        '## Bare relay (src/bench/audio/bareRelay.ts), upstream over TLS',
      );
      // The fakes served the upstream on https:// or wss:// only, and calls were still answered.
      for (const arm of result.arms) {
        expect(arm.note, arm.arm).toBeNull();
        expect(arm.upstreamTls, arm.arm).toBe(true);
        const level = arm.levels[0]!;
        expect(level.callers.errors, arm.arm).toEqual({});
        expect(level.server.liveCalls, arm.arm).toBe(3);
        expect(level.callers.speechEndToFirstAudioMs.n, arm.arm).toBeGreaterThan(0);
      }
    },
    60_000,
  );

  test('3 callers for 5 s against the engine: real Media Streams calls answered, stage timings reported', async () => {
    const result = await runAudioBench({
      ...DEFAULT_AUDIO_SETTINGS,
      arms: ['engine'],
      // Rule understanding: a reply needs no LLM round trips, so every caller's first one lands in
      // the window even on a machine busy with other test files.
      company: 'cold',
      levels: [3],
      climb: false,
      keepGoing: true,
      durationS: 5,
      warmupS: 1,
      firstSpeechMs: [200, 300],
      pin: false,
    });
    const arm = result.arms[0]!;
    expect(arm.note).toBeNull();
    expect(arm.ran).toBe(true);
    const level = arm.levels[0]!;
    const c = level.callers;
    expect(c.errors).toEqual({});
    expect(level.server.liveCalls).toBe(3);
    expect(c.speechEndToFirstAudioMs.n).toBeGreaterThan(0);
    expect(c.traces).toBeGreaterThan(0);
    // Only one caller in TRACE_EVERY (here the first of three) asks for trace frames.
    expect(TRACE_EVERY).toBeGreaterThan(1);
    expect(c.traces).toBeLessThan(c.speechEndToFirstAudioMs.n);
    expect(c.stages.speechStoppedToFirstAudioMs.n).toBeGreaterThan(0);
    expect(level.cpuPerCallPct).toBeGreaterThan(0);
    expect(formatAudioReport(result)).toContain('Engine');
    expect(arm.upstreamTls).toBe(false);
  }, 60_000);
});
