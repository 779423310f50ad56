/** The warmup gate's memory layer in front of remote stores: served from memory, refreshed behind. */
import { expect, test } from 'vitest';
import { cachedGateReads } from '../../src/warmup/gateReads.ts';

function counting() {
  let spent = 100;
  let hits = { triggered: 10, used: 5 };
  const calls = { spent: 0, hitRate: 0 };
  let fail = false;
  return {
    calls,
    set: (s: number, h: { triggered: number; used: number }) => {
      spent = s;
      hits = h;
    },
    fail: (on: boolean) => (fail = on),
    budgets: {
      spent: () => {
        calls.spent++;
        return fail ? Promise.reject(new Error('down')) : Promise.resolve(spent);
      },
    },
    stats: {
      hitRate: () => {
        calls.hitRate++;
        return fail ? Promise.reject(new Error('down')) : Promise.resolve(hits);
      },
    },
  };
}

const flush = () => new Promise((resolve) => setTimeout(resolve, 5));

test('first read waits for the store; later ones are served from memory and refreshed behind', async () => {
  const store = counting();
  let t = 0;
  const reads = cachedGateReads(store.budgets, store.stats, { now: () => t });
  const day = new Date('2026-11-21T10:00:00Z');
  expect(await reads.budgets.spent('k')).toBe(100);
  expect(await reads.stats.hitRate('acme', 7, day)).toEqual({ triggered: 10, used: 5 });
  store.set(200, { triggered: 20, used: 5 });
  t = 400; // fresh: memory only
  expect(await reads.budgets.spent('k')).toBe(100);
  expect(store.calls.spent).toBe(1);
  t = 600; // older than refreshAfterMs: the old value now, the new one behind it
  expect(await reads.budgets.spent('k')).toBe(100);
  expect(await reads.stats.hitRate('acme', 7, day)).toEqual({ triggered: 10, used: 5 });
  await flush();
  expect(await reads.budgets.spent('k')).toBe(200);
  expect(await reads.stats.hitRate('acme', 7, day)).toEqual({ triggered: 20, used: 5 });
  expect(store.calls).toEqual({ spent: 2, hitRate: 2 });
  // Categories and days are separate reads.
  await reads.stats.hitRate('acme', 7, day, 'billing');
  await reads.stats.hitRate('acme', 7, new Date('2026-11-22T00:00:01Z'));
  expect(store.calls.hitRate).toBe(4);
});

test('a value past maxStaleMs is not served: the read waits; a failed refresh keeps the old value', async () => {
  const store = counting();
  let t = 0;
  const reads = cachedGateReads(store.budgets, store.stats, { now: () => t, maxStaleMs: 5000 });
  expect(await reads.budgets.spent('k')).toBe(100);
  store.fail(true);
  t = 1000;
  expect(await reads.budgets.spent('k')).toBe(100);
  await flush();
  t = 6000;
  await expect(reads.budgets.spent('k')).rejects.toThrow('down');
  store.fail(false);
  store.set(300, { triggered: 0, used: 0 });
  expect(await reads.budgets.spent('k')).toBe(300);
});
