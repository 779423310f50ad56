import { describe, expect, test } from 'vitest';
import { parseRelayFrame } from '../../src/twilio/relayProtocol.ts';

describe('ConversationRelay frames', () => {
  test('the documented inbound messages parse', () => {
    const frames = [
      {
        type: 'setup',
        sessionId: 'VX1',
        callSid: 'CA1',
        from: '+15550000001',
        to: '+15550000002',
        customParameters: { a: 'b' },
      },
      { type: 'prompt', voicePrompt: 'Hello there', lang: 'en-US', last: true },
      { type: 'interrupt', utteranceUntilInterrupt: 'Our hours are', durationUntilInterruptMs: 460 },
      { type: 'interrupt', utteranceUntilInterrupt: 'Our hours are', durationUntilInterruptMs: '460' },
      { type: 'dtmf', digit: '0' },
      { type: 'error', description: 'Invalid message received' },
    ];
    for (const f of frames)
      expect(parseRelayFrame(JSON.stringify(f))).toMatchObject({ ok: true, message: { type: f.type } });
  });

  test('garbage is refused with a reason that never quotes the frame', () => {
    const secret = 'my card number is 4111111111111111';
    for (const data of [
      '{not json',
      JSON.stringify({ type: 'prompt' }),
      JSON.stringify({ type: 'prompt', voicePrompt: 42 }),
      JSON.stringify({ type: 'dtmf', digit: secret }),
      JSON.stringify({ type: 'mystery', voicePrompt: secret }),
      JSON.stringify({ type: 'setup' }),
      JSON.stringify([1, 2, 3]),
      'null',
    ]) {
      const r = parseRelayFrame(data);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.reason).not.toContain('4111');
    }
  });
});
