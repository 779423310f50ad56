import { afterEach, describe, expect, test } from 'vitest';
import type { StateValue } from 'xstate';
import { callMachine } from '../../machines/callMachine.ts';
import { TestCall } from '../../src/cli/call.ts';
import { TransitionInference, replaySteps } from '../../src/observability/inspect/replay.ts';
import { ReplayRecorder } from '../../src/observability/inspect/replayRecorder.ts';
import { activeStateIds, describeMachine } from '../../src/observability/inspect/statechart.ts';
import { startTestApp } from '../support/testApp.ts';
import type { TestApp } from '../support/testApp.ts';

const inference = new TransitionInference(describeMachine(callMachine));
const active = (value: StateValue) => new Set(activeStateIds(callMachine, value));
const explain = (from: StateValue, to: StateValue) =>
  inference.explain(active(from), active(to)).map((t) => t.label);

describe('inferring what moved a recorded call', () => {
  test('a caller event', () => {
    expect(
      explain(
        { conversation: 'listening' },
        { conversation: { thinking: { understanding: { capture: 'running', detect: 'running' } } } },
      ),
    ).toEqual(['caller.transcriptFinal']);
  });

  test("an invoked actor's done through a final state and the parent's done: the actor first, not the consequence", () => {
    const labels = explain(
      { conversation: { thinking: { routing: { cold: 'tier2' } } } },
      { conversation: 'speaking' },
    );
    expect(labels[0]).toBe('done tier2');
    expect(labels).not.toContain('done');
  });

  test("a parallel region's last final state completes the parallel state, then eventless hops", () => {
    const labels = explain(
      { conversation: { thinking: { understanding: { capture: 'done', detect: 'running' } } } },
      { conversation: { thinking: 'redetecting' } },
    );
    expect(labels[0]).toBe('done detect');
  });

  test('ambiguous steps list every candidate; same states with a new context are actions-only transitions', () => {
    expect(explain({ conversation: 'speaking' }, { conversation: 'listening' })).toEqual(
      expect.arrayContaining(['playback.done', 'caller.speechStarted']),
    );
    const warm = { conversation: { thinking: { routing: { warm: 'tier2' } } } };
    expect(explain(warm, warm)).toEqual(expect.arrayContaining(['done llm', 'error llm']));
  });
});

let app: TestApp | null = null;
afterEach(async () => {
  await app?.stop();
  app = null;
});

describe('ReplayRecorder', () => {
  test('records live calls and keeps a bounded number of ended ones, steps trimmed to the limit', async () => {
    app = await startTestApp();
    const recorder = new ReplayRecorder(app.engine, { recentCalls: 2, stepsPerCall: 8 });
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const call = new TestCall({ url: app.server.url, to: '+15550100100', from: '+15555550123' });
      await call.connect();
      const id = [...app.engine.sessions()][0]!.id;
      ids.push(id);
      expect(recorder.live().map((r) => r.id)).toEqual([id]);
      await call.say('What are your hours?');
      await call.say('Do you have a warranty on repairs?');
      await call.close();
      await expect.poll(() => app!.engine.liveCalls).toBe(0);
    }
    expect(recorder.live()).toEqual([]);
    expect(recorder.recent().map((r) => r.id)).toEqual([ids[2], ids[1]]);
    expect(recorder.get(ids[0]!)).toBeUndefined();

    const last = recorder.get(ids[2]!)!;
    expect(last.endReason).toBe('stream-stopped');
    expect(last.endedAt).not.toBeNull();
    expect(last.steps.length).toBeLessThanOrEqual(8 + 2);
    expect(last.droppedSteps).toBeGreaterThan(0);
    expect(last.turns.map((t) => t.turn)).toEqual([1, 2]);
    expect(last.turns[0]!.record.scenarioId).toBe('hours-open');
    expect(last.turns[0]!.latencyMs).toBeGreaterThan(0);
    expect(JSON.parse(last.steps.at(-1)!.value)).toBe('ended');
    recorder.close();
  });

  test('replay steps carry active states, inferred triggers and the context where it changed', async () => {
    app = await startTestApp();
    const recorder = new ReplayRecorder(app.engine);
    const call = new TestCall({ url: app.server.url, to: '+15550100100', from: '+15555550123' });
    await call.connect();
    await call.say('What are your hours?');
    await call.close();
    await expect.poll(() => app!.engine.liveCalls).toBe(0);
    const recording = recorder.recent()[0]!;
    const steps = replaySteps(recording, callMachine, inference);
    expect(steps[0]).toMatchObject({ label: 'start', event: 'xstate.init', inferred: false });
    expect(steps[0]!.active).toEqual(['call', 'call.awaitingStart']);
    expect(steps[0]!.context?.turn).toBe(0);
    const labels = steps.map((s) => s.label);
    expect(labels.slice(0, 4)).toEqual(['start', 'twilio.start', 'playback.done', 'caller.transcriptFinal']);
    const heard = steps.find((s) => s.label === 'caller.transcriptFinal')!;
    expect(heard.inferred).toBe(true);
    expect(heard.transitions).toEqual([
      {
        source: 'call.conversation.listening',
        targets: [
          'call.conversation.thinking.understanding.capture.running',
          'call.conversation.thinking.understanding.detect.running',
        ],
        label: 'caller.transcriptFinal',
      },
    ]);
    expect(heard.context?.utterance).toBe('What are your hours?');
    expect(steps.at(-1)!.active).toContain('call.ended');
    expect(steps.at(-1)!.transitions).toEqual([
      expect.objectContaining({ source: 'call.conversation.speaking', targets: ['call.ended'] }),
    ]);
    expect(steps.at(-1)!.alternatives).toContain('twilio.stop');
    recorder.close();
  });
});
