import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { TurnRecord } from '../../machines/types.ts';
import { newCostEvent } from '../../src/cost/costEvent.ts';
import { createCallRecorder, getCall, listCalls, listCostEvents } from '../../src/store/callRecords.ts';
import { insertCostEvents } from '../../src/store/sql/insertCostEvents.ts';
import { openTestDb, silentLog } from './dbForTest.ts';
import type { TestDb } from './dbForTest.ts';
import { flakyDb } from './outageDb.ts';

let t: TestDb;

beforeAll(async () => {
  t = await openTestDb();
});

afterAll(async () => {
  await t.dispose();
});

beforeEach(async () => {
  await t.db.exec('DELETE FROM calls; DELETE FROM turns; DELETE FROM cost_events;');
});

function turn(n: number, fields: Partial<TurnRecord> = {}): TurnRecord {
  return {
    turn: n,
    utterance: `utterance ${n}`,
    slots: { callerName: 'Dana', callbackNumber: '+15550001111' },
    situation: {
      category: 'drain',
      confidence: 0.8,
      flags: { emergency: false, wantsHuman: false, outOfScope: false, goodbye: false },
      source: 'rules',
      providerMs: 0,
      durationMs: 1,
    },
    reconciled: false,
    reconcileReason: null,
    tier: 2,
    confidence: 0.91,
    tier1Confidence: 0.4,
    tier2Confidence: 0.91,
    category: 'drain',
    scenarioId: 'clogged-sink',
    warmup: 'cancelled',
    warmupReason: 'tier1-uncertain',
    fallbackKind: null,
    reply: `reply ${n}`,
    next: 'listen',
    timings: {
      captureMs: 1,
      detectMs: 1,
      redetectMs: null,
      tier1Ms: 0.2,
      warmupGateMs: 0.1,
      tier2Ms: 100,
      tier3Ms: null,
      tier3FirstTokenMs: null,
      fallbackMs: null,
      providerMs: 100,
    },
    ...fields,
  };
}

describe('call recorder', () => {
  it('writes a call, its turns and its end behind the call, and reads them back', async () => {
    const rec = createCallRecorder({ db: t.db, log: silentLog });
    const startedAt = new Date('2026-11-01T10:00:00Z');
    rec.recordCallStarted({ callId: 'call-1', companyId: 'acme', callSid: null, startedAt });
    for (const n of [1, 2, 3]) {
      rec.recordTurn({
        callId: 'call-1',
        companyId: 'acme',
        record: turn(n),
        latencyMs: 150 + n,
        engineMs: 2,
      });
    }
    rec.recordCallEnded({
      callId: 'call-1',
      companyId: 'acme',
      callSid: 'CA0001',
      startedAt,
      endedAt: new Date('2026-11-01T10:02:00Z'),
      endReason: 'caller-hung-up',
    });
    expect(rec.stats().written).toBe(0);
    await rec.flush();
    expect(rec.stats()).toMatchObject({ written: 5, dropped: 0, queued: 0 });

    await insertCostEvents(t.db, [
      newCostEvent({
        companyId: 'acme',
        callId: 'call-1',
        turn: 1,
        purpose: 'tier3',
        action: 'completed',
        provider: 'openai',
        model: 'm',
        costUsd: 0.25,
      }),
      newCostEvent({
        companyId: 'acme',
        callId: 'call-1',
        turn: 2,
        purpose: 'tier3',
        action: 'completed',
        provider: 'openai',
        model: 'm',
        costUsd: 0.5,
      }),
    ]);

    const found = await getCall(t.db, 'call-1');
    expect(found?.call).toEqual({
      id: 'call-1',
      callSid: 'CA0001',
      companyId: 'acme',
      startedAt: '2026-11-01T10:00:00.000Z',
      endedAt: '2026-11-01T10:02:00.000Z',
      endReason: 'caller-hung-up',
      turns: 3,
      costUsd: 0.75,
      costComplete: true,
    });
    expect(found?.turns.map((x) => x.turn)).toEqual([1, 2, 3]);
    expect(found?.turns[0]).toMatchObject({
      transcript: 'utterance 1',
      slots: { callerName: 'Dana', callbackNumber: '+15550001111' },
      category: 'drain',
      scenarioId: 'clogged-sink',
      tier: '2',
      confidence: 0.91,
      tier1Confidence: 0.4,
      tier2Confidence: 0.91,
      detectConfidence: 0.8,
      warmup: 'cancelled',
      warmupReason: 'tier1-uncertain',
      reconcileReason: null,
      next: 'listen',
      reply: 'reply 1',
      latencyMs: 151,
      engineMs: 2,
    });
    expect(found?.turns[0]?.timings).toMatchObject({ tier2Ms: 100, redetectMs: null });
    expect(await getCall(t.db, 'nope')).toBeNull();
    await rec.close();
  });

  it('writes a turn recorded twice once, and an end whose start was never written', async () => {
    const rec = createCallRecorder({ db: t.db, log: silentLog });
    rec.recordTurn({ callId: 'call-2', companyId: 'acme', record: turn(1), latencyMs: 10 });
    rec.recordTurn({ callId: 'call-2', companyId: 'acme', record: turn(1), latencyMs: 10 });
    rec.recordCallEnded({
      callId: 'call-2',
      companyId: 'acme',
      callSid: null,
      startedAt: '2026-11-01T11:00:00Z',
      endedAt: '2026-11-01T11:00:30Z',
      endReason: 'shutdown',
    });
    await rec.close();
    const found = await getCall(t.db, 'call-2');
    expect(found?.call).toMatchObject({ turns: 1, endReason: 'shutdown' });
  });

  it('completes a turn with what the caller heard, in the same batch or a later one', async () => {
    const rec = createCallRecorder({ db: t.db, log: silentLog });
    rec.recordCallStarted({
      callId: 'call-h',
      companyId: 'acme',
      callSid: null,
      startedAt: '2026-11-01T12:00:00Z',
    });
    rec.recordTurn({ callId: 'call-h', companyId: 'acme', record: turn(1), latencyMs: 10 });
    rec.recordHeard({ callId: 'call-h', turn: 1, heard: 'First sentence.', interrupted: true });
    rec.recordTurn({ callId: 'call-h', companyId: 'acme', record: turn(2), latencyMs: 10 });
    await rec.flush();
    rec.recordHeard({ callId: 'call-h', turn: 2, heard: 'All of it.', interrupted: false });
    // A report for a turn never recorded (the greeting) changes nothing.
    rec.recordHeard({ callId: 'call-h', turn: 0, heard: 'Hello.', interrupted: false });
    await rec.close();
    const found = await getCall(t.db, 'call-h');
    expect(found?.turns.map((x) => [x.turn, x.heard, x.interrupted])).toEqual([
      [1, 'First sentence.', true],
      [2, 'All of it.', false],
    ]);
  });

  it('lists a company’s calls newest first, by page', async () => {
    const rec = createCallRecorder({ db: t.db, log: silentLog, batchSize: 3 });
    for (let i = 0; i < 7; i += 1) {
      rec.recordCallStarted({
        callId: `c${i}`,
        companyId: i === 6 ? 'other' : 'acme',
        callSid: null,
        startedAt: new Date(Date.UTC(2026, 10, 2, 9, i)),
      });
    }
    await rec.close();
    const first = await listCalls(t.db, { companyId: 'acme', limit: 4 });
    expect(first.map((c) => c.id)).toEqual(['c5', 'c4', 'c3', 'c2']);
    const next = await listCalls(t.db, { companyId: 'acme', limit: 4, before: first.at(-1)!.startedAt });
    expect(next.map((c) => c.id)).toEqual(['c1', 'c0']);
    expect(next[0]).toMatchObject({ endedAt: null, turns: 0, costUsd: 0, costComplete: true });
  });

  it('keeps records through a short outage and drops the oldest, counted, past its cap', async () => {
    let down = true;
    const rec = createCallRecorder({
      db: flakyDb(t.db, () => down),
      log: silentLog,
      batchSize: 2,
      maxQueue: 5,
      flushIntervalMs: 10,
      retryMinMs: 10,
    });
    for (let i = 0; i < 8; i += 1) {
      rec.recordCallStarted({ callId: `o${i}`, companyId: 'acme', callSid: null, startedAt: Date.now() });
    }
    await rec.flush();
    expect(rec.stats()).toMatchObject({ written: 0, dropped: 3, queued: 5, databaseAvailable: false });
    down = false;
    await rec.flush();
    expect(rec.stats()).toMatchObject({ written: 5, dropped: 3, queued: 0, databaseAvailable: true });
    const ids = (await listCalls(t.db, { companyId: 'acme' })).map((c) => c.id).sort();
    expect(ids).toEqual(['o3', 'o4', 'o5', 'o6', 'o7']);
    await rec.close();
  });
});

describe('cost events by company and period', () => {
  it('returns the company’s events in [from, to), oldest first, by page', async () => {
    const at = (minute: number) => new Date(Date.UTC(2026, 10, 3, 12, minute)).toISOString();
    const events = [0, 1, 2, 3, 4].map((m) =>
      newCostEvent({
        at: at(m),
        companyId: m === 4 ? 'other' : 'acme',
        purpose: 'warmup',
        action: m === 3 ? 'cancelled' : 'completed',
        provider: 'anthropic',
        model: 'claude',
        costUsd: m === 2 ? null : 0.001 * m,
        estimated: m === 3,
      }),
    );
    await insertCostEvents(t.db, events);
    const page1 = await listCostEvents(t.db, { companyId: 'acme', from: at(0), to: at(3), limit: 2 });
    expect(page1.map((e) => e.at)).toEqual([at(0), at(1)]);
    expect(page1[1]).toEqual(events[1]);
    const page2 = await listCostEvents(t.db, {
      companyId: 'acme',
      from: at(0),
      to: at(3),
      after: { at: page1[1]!.at, id: page1[1]!.id },
    });
    expect(page2).toEqual([events[2]]);
    expect(page2[0]!.costUsd).toBeNull();
    const all = await listCostEvents(t.db, { companyId: 'acme', from: at(0), to: at(60) });
    expect(all.map((e) => e.id)).toEqual(events.slice(0, 4).map((e) => e.id));
  });
});
