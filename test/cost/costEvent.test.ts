import { describe, expect, it } from 'vitest';
import { flatRandomUuid, newCostEvent } from '../../src/cost/costEvent.ts';

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('cost event ids', () => {
  it('are version 4 UUIDs, all different', () => {
    const ids = Array.from({ length: 2000 }, () => flatRandomUuid());
    for (const id of ids) expect(id).toMatch(UUID_V4);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('newCostEvent gives each event its own id and keeps the fields it is given', () => {
    const fields = {
      companyId: 'c',
      purpose: 'tts',
      action: 'completed',
      provider: 'openai',
      model: 'm',
    } as const;
    const a = newCostEvent(fields);
    const b = newCostEvent({ ...fields, turn: 3, audioMs: 1200 });
    expect(a.id).toMatch(UUID_V4);
    expect(b.id).not.toBe(a.id);
    expect(b).toMatchObject({ turn: 3, audioMs: 1200, costUsd: 0, callId: null });
  });
});
