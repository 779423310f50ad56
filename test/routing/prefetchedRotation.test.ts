/** Fallback rotation with the next index fetched ahead. */
import { expect, test } from 'vitest';
import { createMemoryRotationStore } from '../../src/routing/fallbackPicker.ts';
import type { RotationStore } from '../../src/routing/fallbackPicker.ts';
import { prefetchedRotation } from '../../src/routing/prefetchedRotation.ts';

const settle = () => new Promise((resolve) => setTimeout(resolve, 5));

test('every index comes from the shared store, one pick ahead; only the first pick waits', async () => {
  const shared = createMemoryRotationStore();
  let calls = 0;
  let inLine = 0;
  const store: RotationStore = {
    next: (key) => {
      calls++;
      return shared.next(key);
    },
  };
  const a = prefetchedRotation(store);
  const b = prefetchedRotation(store);
  expect(await a.next('k')).toBe(0);
  await settle();
  expect(calls).toBe(2); // the pick, then its successor fetched ahead (1)
  // Another engine takes the next free index from the shared counter.
  expect(await b.next('k')).toBe(2);
  await settle();
  const before = calls;
  const picked = a.next('k');
  inLine = calls - before;
  expect(await picked).toBe(1);
  expect(inLine).toBe(0); // served from what was fetched ahead
  await settle();
  expect(await a.next('k')).toBe(4);
});

test('a failed prefetch is forgotten: the next pick fetches in line', async () => {
  let fail = false;
  let n = 0;
  const store: RotationStore = {
    next: () => (fail ? Promise.reject(new Error('down')) : Promise.resolve(n++)),
  };
  const r = prefetchedRotation(store);
  expect(await r.next('k')).toBe(0);
  fail = true;
  await settle();
  fail = false;
  expect(await r.next('k')).toBe(1);
});
