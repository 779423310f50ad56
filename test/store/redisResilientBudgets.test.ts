/**
 * The resilient budget wrapper's local mode, decision by decision, with a scripted Redis (no server
 * needed): the allowance rule, spend kept through an outage and flushed after it, a failed flush
 * keeping the outage open, and no exception ever reaching the caller.
 */
import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { describe, expect, test } from 'vitest';
import type { Reservation } from '../../src/cost/budgets.ts';
import { createLocalBudgetStore } from '../../src/cost/budgetsLocal.ts';
import type { RedisBudgetStore, RedisReservation } from '../../src/cost/redisBudgets.ts';
import { AppError } from '../../src/errors.ts';
import { createResilientBudgetStore } from '../../src/store/resilientBudgets.ts';
import { createRedisHealth } from '../../src/store/resilientRedis.ts';

/** A Redis budget store whose "server" can go down, and a connection object health can watch. */
function scriptedRedis() {
  const state = { down: false, failAdd: false, bug: false };
  const backing = createLocalBudgetStore();
  const spent = new Map<string, number>();
  const reserved = new Map<string, number>();
  let id = 0;
  const gate = () => {
    if (state.down) throw new Error('Connection is closed.');
  };
  const store: RedisBudgetStore = {
    async reserveDetailed(key, micros, limit) {
      gate();
      if (state.bug) throw new AppError('ERR_BUDGET_INVALID_AMOUNT', 'bug');
      const r = await backing.reserve(key, micros, limit);
      if (r) reserved.set(key, (reserved.get(key) ?? 0) + micros);
      const reservation: RedisReservation | null = r ? { ...r, id: String(++id) } : null;
      return { reservation, spent: spent.get(key) ?? 0, reserved: reserved.get(key) ?? 0 };
    },
    async reserve(key, micros, limit) {
      return (await this.reserveDetailed(key, micros, limit)).reservation;
    },
    async settleDetailed(r, actual) {
      gate();
      await backing.settle(r, actual);
      reserved.set(r.key, (reserved.get(r.key) ?? 0) - r.micros);
      spent.set(r.key, (spent.get(r.key) ?? 0) + actual);
      return { spent: spent.get(r.key)!, released: true };
    },
    async settle(r, actual) {
      await this.settleDetailed(r, actual);
    },
    async spent(key) {
      gate();
      return backing.spent(key);
    },
    async addSpent(key, micros) {
      gate();
      if (state.failAdd) throw new Error('Command timed out');
      spent.set(key, (spent.get(key) ?? 0) + micros);
      await backing.seed(key, spent.get(key)!);
      return spent.get(key)!;
    },
    async seed(key, micros) {
      gate();
      await backing.seed(key, micros);
    },
    async reconcile(key, micros) {
      gate();
      return backing.reconcile(key, micros);
    },
    snapshot: () => Promise.reject(new Error('not used')),
  };
  const connection = Object.assign(new EventEmitter(), {
    options: { commandTimeout: 50 },
    ping: () => (state.down ? Promise.reject(new Error('Connection is closed.')) : Promise.resolve('PONG')),
  }) as unknown as Redis;
  return { state, store, connection };
}

function setup(localShare = 0.25) {
  const r = scriptedRedis();
  const events: string[] = [];
  const health = createRedisHealth({
    redis: r.connection,
    probeIntervalMs: 10,
    onDegraded: () => events.push('degraded'),
    onRecovered: () => events.push('recovered'),
  });
  const budgets = createResilientBudgetStore({ store: r.store, health, localShare });
  return { ...r, health, budgets, events };
}

async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !check(); i++) await sleep(5);
  expect(check()).toBe(true);
}

const KEY = 'budget:tier3:acme:2026-11';

describe('resilient budgets, local mode', () => {
  test('an outage spends at most a share of what Redis last said was left', async () => {
    const { state, budgets, events, health } = setup(0.25);
    const held = await budgets.reserve(KEY, 200, 1000); // Redis: 200 reserved
    await budgets.settle((await budgets.reserve(KEY, 200, 1000))!, 200); // Redis: 200 spent
    state.down = true;
    // Left: 1000 − 200 spent − 200 reserved = 600; a quarter is 150.
    const a = await budgets.reserve(KEY, 100, 1000);
    expect(a).not.toBeNull();
    expect(await budgets.reserve(KEY, 60, 1000)).toBeNull();
    expect(await budgets.reserve(KEY, 50, 1000)).not.toBeNull();
    expect(events).toEqual(['degraded']);
    // Settled during the outage: the local one and the one Redis still holds.
    await budgets.settle(a!, 90);
    await budgets.settle(held!, 150);
    expect(await budgets.spent(KEY)).toBe(200 + 90 + 150);
    expect(budgets.unsynced().get(KEY)).toBe(240);
    health.close();
  });

  test('a key Redis never answered for gets limit × share, or less after seed()', async () => {
    const { state, budgets, health } = setup(0.25);
    state.down = true;
    expect(await budgets.reserve('budget:tier3:new:2026-11', 250, 1000)).not.toBeNull();
    expect(await budgets.reserve('budget:tier3:new:2026-11', 1, 1000)).toBeNull();
    await budgets.seed('budget:tier3:seeded:2026-11', 800); // from the cost_events sum
    expect(await budgets.reserve('budget:tier3:seeded:2026-11', 51, 1000)).toBeNull();
    expect(await budgets.reserve('budget:tier3:seeded:2026-11', 50, 1000)).not.toBeNull();
    health.close();
  });

  test('recovery flushes the outage spend before calls use Redis again; a failed flush keeps the outage open', async () => {
    const { state, store, budgets, events, health } = setup(0.25);
    await budgets.settle((await budgets.reserve(KEY, 100, 1000))!, 100);
    state.down = true;
    const local = await budgets.reserve(KEY, 200, 1000); // allowance 225
    await budgets.settle(local!, 200);

    state.failAdd = true;
    state.down = false;
    await sleep(60); // several probes: ping answers, the flush fails
    expect(health.degraded).toBe(true);
    expect(events).toEqual(['degraded']);
    // Still the same outage: the allowance did not start over.
    expect(await budgets.reserve(KEY, 30, 1000)).toBeNull();

    state.failAdd = false;
    await until(() => events.includes('recovered'));
    expect(events).toEqual(['degraded', 'recovered']);
    expect(await store.spent(KEY)).toBe(300);
    expect(budgets.unsynced().size).toBe(0);
    expect(await budgets.reserve(KEY, 700, 1000)).not.toBeNull();
    health.close();
  });

  test('never throws: a bug in the Redis path answers from the local store without an outage', async () => {
    const { state, budgets, health, events } = setup(0.5);
    state.bug = true;
    expect(await budgets.reserve(KEY, 100, 1000)).not.toBeNull();
    expect(health.degraded).toBe(false);
    expect(events).toEqual([]);
    const foreign: Reservation = { key: KEY, micros: 5 };
    await expect(budgets.settle(foreign, Number.NaN)).resolves.toBeUndefined();
    health.close();
  });
});
