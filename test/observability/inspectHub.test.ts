import { pino } from 'pino';
import { createActor, createMachine, toObserver } from 'xstate';
import type { AnyActorRef, InspectionEvent, Observer } from 'xstate';
import { describe, expect, test } from 'vitest';
import { InspectHub } from '../../src/observability/inspect/inspectHub.ts';
import type { CallDirectory, WatchableCall } from '../../src/observability/inspect/inspectHub.ts';

const log = pino({ level: 'silent' });

const toggle = createMachine({
  id: 'toggle',
  initial: 'off',
  states: { off: { on: { flip: 'on' } }, on: { on: { flip: 'off' } } },
});

const startToggle = () => createActor(toggle).start();

/** A stand-in for the engine: live calls by id, and their end. */
function directory() {
  const calls = new Map<string, WatchableCall>();
  const listeners = new Set<{ ended?(s: WatchableCall): void }>();
  const dir: CallDirectory & { add(id: string): ReturnType<typeof startToggle>; end(id: string): void } = {
    session: (id) => calls.get(id),
    onSession(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    add(id) {
      const actor = startToggle();
      calls.set(id, { id, actor });
      return actor;
    },
    end(id) {
      const call = calls.get(id)!;
      calls.delete(id);
      for (const l of listeners) l.ended?.(call);
    },
  };
  return dir;
}

/**
 * Counts, at the actor system itself, the inspection observers attached and the inspection events
 * delivered to them, so a test sees whether XState still inspects the actor, not just whether a
 * viewer still gets events.
 */
function countInspection(actor: AnyActorRef) {
  const system = actor.system as { inspect(o: Observer<InspectionEvent>): { unsubscribe(): void } };
  const original = system.inspect.bind(system);
  const counts = { observers: 0, delivered: 0 };
  system.inspect = (observer) => {
    const target = toObserver(observer);
    counts.observers++;
    const subscription = original({
      next: (event) => {
        counts.delivered++;
        target.next?.(event);
      },
    });
    return {
      unsubscribe() {
        counts.observers--;
        subscription.unsubscribe();
      },
    };
  };
  return counts;
}

describe('InspectHub', () => {
  test('attaches on the first viewer, shares one observer, and detaches when the last viewer leaves', () => {
    const calls = directory();
    const actor = calls.add('c1');
    const counts = countInspection(actor);
    const hub = new InspectHub(calls, log);

    actor.send({ type: 'flip' });
    expect(counts.delivered).toBe(0);
    expect(hub.isAttached('c1')).toBe(false);

    const a: InspectionEvent[] = [];
    const b: InspectionEvent[] = [];
    const leaseA = hub.watch('c1', { next: (e) => a.push(e) })!;
    const leaseB = hub.watch('c1', { next: (e) => b.push(e) })!;
    expect(counts.observers).toBe(1);
    expect(hub.viewers('c1')).toBe(2);

    actor.send({ type: 'flip' });
    expect(a.length).toBeGreaterThan(0);
    expect(b).toHaveLength(a.length);
    expect(a.map((e) => e.type)).toContain('@xstate.microstep');

    leaseA.close();
    leaseA.close(); // harmless twice
    expect(hub.isAttached('c1')).toBe(true);
    const aBefore = a.length;
    actor.send({ type: 'flip' });
    expect(a).toHaveLength(aBefore);
    expect(b.length).toBeGreaterThan(aBefore);

    leaseB.close();
    expect(hub.isAttached('c1')).toBe(false);
    expect(hub.attached).toBe(0);
    expect(counts.observers).toBe(0);
    const delivered = counts.delivered;
    for (let i = 0; i < 5; i++) actor.send({ type: 'flip' });
    expect(counts.delivered).toBe(delivered);
    expect(actor.getSnapshot().value).toBe('off');

    // A new viewer attaches again.
    const lease = hub.watch('c1', { next: () => {} })!;
    expect(counts.observers).toBe(1);
    lease.close();
    expect(counts.observers).toBe(0);
  });

  test('a call that is not live cannot be watched', () => {
    const hub = new InspectHub(directory(), log);
    expect(hub.watch('nope', { next: () => {} })).toBeUndefined();
    expect(hub.attached).toBe(0);
  });

  test('when the call ends, its viewers are told and inspection is detached', async () => {
    const calls = directory();
    const actor = calls.add('c2');
    const counts = countInspection(actor);
    const hub = new InspectHub(calls, log);
    let ended = 0;
    hub.watch('c2', { next: () => {}, ended: () => ended++ });
    hub.watch('c2', { next: () => {}, ended: () => ended++ });
    calls.end('c2');
    await Promise.resolve();
    expect(ended).toBe(2);
    expect(hub.attached).toBe(0);
    expect(counts.observers).toBe(0);
  });

  test("a viewer that throws does not break the call's transitions or the other viewers", () => {
    const calls = directory();
    const actor = calls.add('c3');
    const hub = new InspectHub(calls, log);
    const seen: string[] = [];
    hub.watch('c3', {
      next: () => {
        throw new Error('viewer bug');
      },
    });
    hub.watch('c3', { next: (e) => seen.push(e.type) });
    actor.send({ type: 'flip' });
    expect(actor.getSnapshot().value).toBe('on');
    expect(seen.length).toBeGreaterThan(0);
  });

  test('close detaches from every call', () => {
    const calls = directory();
    const counts = countInspection(calls.add('c4'));
    const hub = new InspectHub(calls, log);
    hub.watch('c4', { next: () => {} });
    hub.close();
    expect(counts.observers).toBe(0);
    expect(hub.attached).toBe(0);
  });
});
