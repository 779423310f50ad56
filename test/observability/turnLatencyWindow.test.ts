import { describe, expect, test } from 'vitest';
import { createTurnLatencyWindow } from '../../src/observability/turnLatencyWindow.ts';

describe('createTurnLatencyWindow', () => {
  test('splits first turns from later ones, nearest-rank p50/p95, and keeps the process’s first turn', () => {
    const window = createTurnLatencyWindow(100, () => new Date('2026-11-21T08:00:00Z'));
    window.observe(1, 90);
    for (let i = 1; i <= 20; i++) window.observe(1, i);
    for (let i = 1; i <= 10; i++) window.observe(2 + i, 100 + i);

    const s = window.snapshot();
    expect(s.firstTurn).toEqual({ n: 21, p50Ms: 11, p95Ms: 20 });
    expect(s.laterTurns).toEqual({ n: 10, p50Ms: 105, p95Ms: 110 });
    expect(s.processFirstTurn).toEqual({ latencyMs: 90, at: '2026-11-21T08:00:00.000Z' });
  });

  test('is bounded: only the last `capacity` turns of each kind count', () => {
    const window = createTurnLatencyWindow(5);
    for (let i = 0; i < 5; i++) window.observe(2, 1000);
    for (let i = 0; i < 5; i++) window.observe(2, 10);

    expect(window.snapshot().laterTurns).toEqual({ n: 5, p50Ms: 10, p95Ms: 10 });
    expect(window.snapshot().firstTurn).toEqual({ n: 0, p50Ms: null, p95Ms: null });
  });
});
