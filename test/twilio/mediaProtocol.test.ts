import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  MAX_MEDIA_PAYLOAD_CHARS,
  PayloadDecoder,
  clearMessage,
  isMediaFrame,
  markMessage,
  mediaFrameSchema,
  mediaMessage,
  parseMediaFrame,
  scanMediaFrame,
} from '../../src/twilio/mediaProtocol.ts';

const SID = 'MZ18ad3ab5a668481ce02b83e7395059f0';
const PAYLOAD = Buffer.alloc(160, 0x7f).toString('base64');

/** The documented inbound messages (research/protocols.md §1.2). */
const documented = {
  connected: { event: 'connected', protocol: 'Call', version: '1.0.0' },
  start: {
    event: 'start',
    sequenceNumber: '1',
    start: {
      accountSid: 'AC123',
      streamSid: SID,
      callSid: 'CA123',
      tracks: ['inbound'],
      customParameters: { token: 'abc' },
      mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
    },
    streamSid: SID,
  },
  media: {
    event: 'media',
    sequenceNumber: '4',
    media: { track: 'inbound', chunk: '2', timestamp: '5', payload: PAYLOAD },
    streamSid: SID,
  },
  dtmf: { event: 'dtmf', streamSid: SID, sequenceNumber: '5', dtmf: { track: 'inbound_track', digit: '1' } },
  mark: { event: 'mark', sequenceNumber: '4', streamSid: SID, mark: { name: 'my label' } },
  stop: {
    event: 'stop',
    sequenceNumber: '5',
    stop: { accountSid: 'AC123', callSid: 'CA123' },
    streamSid: SID,
  },
};

/** Valid digit fields and base64 payloads (padded or not), for the generated frames below. */
const digits = fc.stringMatching(/^[0-9]{1,16}$/);
const base64 = fc
  .uint8Array({ minLength: 1, maxLength: 400 })
  .chain((bytes) =>
    fc.constantFrom(
      Buffer.from(bytes).toString('base64'),
      Buffer.from(bytes).toString('base64').replace(/=+$/, ''),
    ),
  );

describe('parseMediaFrame', () => {
  it('accepts every documented inbound message', () => {
    for (const [event, frame] of Object.entries(documented)) {
      const parsed = parseMediaFrame(JSON.stringify(frame));
      expect(parsed, event).toEqual({ ok: true, frame });
    }
  });

  it('refuses malformed frames with a reason that never quotes the frame', () => {
    const secret = '4111111111111111';
    const bad: unknown[] = [
      { ...documented.media, sequenceNumber: 4 }, // numeric fields arrive as strings
      { ...documented.media, media: { ...documented.media.media, payload: `${secret}!` } },
      { ...documented.media, media: { ...documented.media.media, payload: '' } },
      { ...documented.media, media: { ...documented.media.media, payload: 'A' } },
      { ...documented.media, media: { ...documented.media.media, payload: 'AAA==' } },
      { ...documented.media, media: { ...documented.media.media, track: secret } },
      { ...documented.media, streamSid: '' },
      { ...documented.dtmf, dtmf: { track: 'inbound_track', digit: secret } },
      { ...documented.dtmf, dtmf: { track: 'inbound_track', digit: 'E' } },
      { ...documented.start, start: { ...documented.start.start, callSid: undefined } },
      { ...documented.mark, mark: {} },
      { ...documented.stop, stop: null },
      [documented.media],
      null,
      secret,
    ];
    for (const frame of bad) {
      const parsed = parseMediaFrame(JSON.stringify(frame));
      expect(parsed.ok, JSON.stringify(frame)).toBe(false);
      if (!parsed.ok) {
        expect(parsed.reason).not.toContain(secret);
        expect(parsed.unknownEvent).toBe(false);
      }
    }
    expect(parseMediaFrame(`{"event":"media","payload":"${secret}`)).toEqual({
      ok: false,
      reason: 'not JSON',
      unknownEvent: false,
    });
  });

  it('tells an undocumented event apart from a malformed one', () => {
    expect(parseMediaFrame('{"event":"transcription","text":"hi"}')).toEqual({
      ok: false,
      reason: 'unknown event',
      unknownEvent: true,
    });
    expect(parseMediaFrame('{"event":7}')).toMatchObject({ ok: false, unknownEvent: false });
  });

  it('bounds the payload: base64 only, padded or not, at most MAX_MEDIA_PAYLOAD_CHARS', () => {
    const media = (payload: string) =>
      parseMediaFrame(JSON.stringify({ ...documented.media, media: { ...documented.media.media, payload } }))
        .ok;
    expect(media(PAYLOAD)).toBe(true);
    expect(media(PAYLOAD.replace(/=+$/, ''))).toBe(true);
    expect(media('A'.repeat(MAX_MEDIA_PAYLOAD_CHARS))).toBe(true);
    expect(media('A'.repeat(MAX_MEDIA_PAYLOAD_CHARS + 4))).toBe(false);
    expect(media(PAYLOAD.replace('f', '-'))).toBe(false); // base64url is not Twilio's alphabet
    expect(media(`${PAYLOAD}\n`)).toBe(false);
    expect(media('AA=A')).toBe(false);
    expect(media('AAA===')).toBe(false);
  });

  it('never throws, whatever text arrives', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.json(), fc.string({ unit: 'binary' })), (text) => {
        const parsed = parseMediaFrame(text);
        expect(typeof parsed.ok).toBe('boolean');
      }),
      { numRuns: 2000 },
    );
  });
});

describe('isMediaFrame (the media fast path)', () => {
  const validFrame = fc.record({
    event: fc.constant('media'),
    sequenceNumber: digits,
    streamSid: fc.string({ minLength: 1, maxLength: 64 }),
    media: fc.record({
      track: fc.constantFrom('inbound', 'outbound'),
      chunk: digits,
      timestamp: digits,
      payload: base64,
    }),
  });
  /** Values near what each field accepts, on both sides of every boundary. */
  const oddValue = fc.oneof(
    fc.constantFrom(
      '',
      '0',
      '-1',
      '1.5',
      ' 1',
      '1e3',
      '٣', // an Arabic-Indic digit: not [0-9]
      '0'.repeat(16),
      '0'.repeat(17),
      'media',
      'inbound',
      'INBOUND',
      'AA==',
      'AAA=',
      'AAAA',
      'A',
      'AA=',
      'A===',
      'AB+/',
      'AB-_',
      'A'.repeat(MAX_MEDIA_PAYLOAD_CHARS),
      'A'.repeat(MAX_MEDIA_PAYLOAD_CHARS + 1),
      'A'.repeat(MAX_MEDIA_PAYLOAD_CHARS + 2),
      'A'.repeat(MAX_MEDIA_PAYLOAD_CHARS + 3),
      `${'A'.repeat(MAX_MEDIA_PAYLOAD_CHARS - 2)}==`,
      `${'A'.repeat(MAX_MEDIA_PAYLOAD_CHARS + 2)}==`,
      'x'.repeat(64),
      'x'.repeat(65),
      null,
      true,
      0,
      7,
      [],
      {},
    ),
    fc.string({ maxLength: 20 }),
    fc.string({ unit: 'grapheme', maxLength: 8 }),
    fc.integer(),
    fc.jsonValue({ maxDepth: 2 }),
    fc.constant(undefined), // the key disappears once the frame goes through JSON
  );
  const fields = [
    ['event'],
    ['sequenceNumber'],
    ['streamSid'],
    ['media'],
    ['media', 'track'],
    ['media', 'chunk'],
    ['media', 'timestamp'],
    ['media', 'payload'],
  ] as const;
  /** A valid frame with one to three fields replaced by odd values (or removed). */
  const mutatedFrame = fc
    .tuple(
      validFrame,
      fc.array(fc.tuple(fc.constantFrom(...fields), oddValue), { minLength: 1, maxLength: 3 }),
    )
    .map(([frame, changes]) => {
      const copy = structuredClone(frame) as Record<string, unknown>;
      for (const [path, value] of changes) {
        let target: Record<string, unknown> = copy;
        if (path.length === 2) {
          if (typeof copy.media !== 'object' || copy.media === null || Array.isArray(copy.media)) continue;
          target = copy.media as Record<string, unknown>;
        }
        // A copy: the constant odd values ({} and []) are shared between runs and must not be
        // written into (a later run would then see a cycle).
        target[path.at(-1)!] = structuredClone(value);
      }
      return copy;
    });
  const extraKeys = validFrame.chain((frame) =>
    fc.dictionary(fc.string({ maxLength: 10 }), fc.jsonValue({ maxDepth: 1 })).map((extra) => ({
      ...extra,
      ...frame,
      media: { ...extra, ...frame.media },
    })),
  );

  it('accepts exactly what the zod schema accepts, over many generated frames', () => {
    let accepted = 0;
    let refused = 0;
    fc.assert(
      fc.property(
        fc.oneof(
          { arbitrary: validFrame, weight: 2 },
          { arbitrary: extraKeys, weight: 1 },
          { arbitrary: mutatedFrame, weight: 6 },
          { arbitrary: fc.jsonValue(), weight: 1 },
        ),
        (value) => {
          // What the socket delivers is JSON text: compare on what JSON.parse gives back.
          const json: unknown = JSON.parse(JSON.stringify(value) ?? 'null');
          const zod = mediaFrameSchema.safeParse(json).success;
          expect(isMediaFrame(json)).toBe(zod);
          if (zod) accepted++;
          else refused++;
        },
      ),
      { numRuns: 30_000 },
    );
    // Both sides of the boundary were exercised in earnest.
    expect(accepted).toBeGreaterThan(5_000);
    expect(refused).toBeGreaterThan(10_000);
  });
});

describe('scanMediaFrame and PayloadDecoder (the path without JSON.parse)', () => {
  /** The documented layout: JSON.stringify of the keys in the documented order. */
  const documentedText = (frame: {
    sequenceNumber: unknown;
    track: unknown;
    chunk: unknown;
    timestamp: unknown;
    payload: unknown;
    streamSid: unknown;
  }) =>
    JSON.stringify({
      event: 'media',
      sequenceNumber: frame.sequenceNumber,
      media: { track: frame.track, chunk: frame.chunk, timestamp: frame.timestamp, payload: frame.payload },
      streamSid: frame.streamSid,
    });
  const odd = fc.oneof(
    fc.constantFrom(
      '',
      '0'.repeat(17),
      'AA=A',
      'AB-_',
      'A',
      'x'.repeat(65),
      'A'.repeat(MAX_MEDIA_PAYLOAD_CHARS + 4),
    ),
    fc.string({ maxLength: 12 }),
    fc.string({ unit: 'binary', maxLength: 6 }),
    fc.integer(),
    fc.constant(null),
  );
  const frame = fc.record({
    sequenceNumber: fc.oneof({ arbitrary: digits, weight: 6 }, odd),
    track: fc.oneof({ arbitrary: fc.constantFrom('inbound', 'outbound'), weight: 6 }, odd),
    chunk: fc.oneof({ arbitrary: digits, weight: 6 }, odd),
    timestamp: fc.oneof({ arbitrary: digits, weight: 6 }, odd),
    payload: fc.oneof({ arbitrary: base64, weight: 6 }, odd),
    streamSid: fc.oneof(
      { arbitrary: fc.constant(SID), weight: 3 },
      { arbitrary: fc.string({ minLength: 1, maxLength: 64, unit: 'binary' }), weight: 3 },
      odd,
    ),
  });
  /** Edits of the text itself: escapes, whitespace, quotes and cuts that JSON.stringify never writes. */
  const edit = fc.tuple(
    fc.nat(),
    fc.constantFrom('\\"', '\\\\', '\\u0041', '\\/', ' ', '\n', '\t', '"', '\u0001', '}', '=', ',"x":1', ''),
    fc.boolean(),
  );
  const text = fc.oneof(
    { arbitrary: frame.map(documentedText), weight: 4 },
    {
      arbitrary: fc.tuple(frame.map(documentedText), edit).map(([t, [at, insert, cut]]) => {
        const i = at % (t.length + 1);
        return cut ? t.slice(0, i) + insert : t.slice(0, i) + insert + t.slice(i);
      }),
      weight: 4,
    },
    // The keys in another order: valid frames the scan leaves to the full parse.
    { arbitrary: frame.map((f) => JSON.stringify({ ...f, event: 'media' })), weight: 1 },
  );

  it('agrees with the full parse: what it accepts parses to the same frame, and it accepts every valid frame in the documented layout', () => {
    const decoder = new PayloadDecoder();
    let fast = 0;
    let refused = 0;
    fc.assert(
      fc.property(text, (t) => {
        const parsed = parseMediaFrame(t);
        const scanned = scanMediaFrame(t);
        const audio = scanned === undefined ? undefined : decoder.decode(scanned.media.payload);
        if (audio !== undefined) {
          fast++;
          expect(parsed).toEqual({ ok: true, frame: scanned });
          expect(Buffer.compare(audio, Buffer.from(scanned!.media.payload, 'base64'))).toBe(0);
        } else if (!parsed.ok) refused++;
        if (parsed.ok && parsed.frame.event === 'media') {
          const f = parsed.frame;
          const inLayout =
            t === documentedText({ ...f.media, sequenceNumber: f.sequenceNumber, streamSid: f.streamSid });
          // Twilio's sids never need an escape; a frame with one is left to the full parse.
          if (inLayout && !t.includes('\\')) expect(audio).toBeDefined();
        }
      }),
      { numRuns: 30_000 },
    );
    expect(fast).toBeGreaterThan(5_000);
    expect(refused).toBeGreaterThan(5_000);
  });

  it('decodes exactly the payloads the schema accepts, into a buffer that grows', () => {
    const decoder = new PayloadDecoder();
    const alphabet = fc.constantFrom(...'AQgw+/09az=-_ \n\u00e9');
    fc.assert(
      fc.property(fc.oneof(base64, fc.string({ unit: alphabet, maxLength: 24 })), (payload) => {
        const schema = mediaFrameSchema.safeParse({
          ...documented.media,
          media: { ...documented.media.media, payload },
        });
        const audio = decoder.decode(payload);
        expect(audio !== undefined).toBe(schema.success || payload === '');
        if (audio !== undefined) expect(Buffer.compare(audio, Buffer.from(payload, 'base64'))).toBe(0);
      }),
      { numRuns: 20_000 },
    );
    const long = Buffer.alloc(12_000, 0x55).toString('base64');
    expect(decoder.decode(long)?.length).toBe(12_000);
    expect(decoder.decode(PAYLOAD)?.length).toBe(160);
  });
});

describe('frames byte for byte as a live Twilio stream sends them', () => {
  // The layout of a published log of a real Media Stream (compact JSON; `start` with accountSid
  // first and the sid repeated at the end; `media` keys in the documented order; `stop` with its
  // streamSid before the stop body), with our own sids and audio.
  const account = 'AC0f3c2d1e0f3c2d1e0f3c2d1e0f3c2d1e';
  const call = 'CA1b2c3d4e5f60718293a4b5c6d7e8f901';
  const frames = {
    connected: '{"event":"connected","protocol":"Call","version":"1.0.0"}',
    start:
      `{"event":"start","sequenceNumber":"1","start":{"accountSid":"${account}","streamSid":"${SID}",` +
      `"callSid":"${call}","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,` +
      `"channels":1},"customParameters":{"company":"riverside-plumbing","token":"t0k3n"}},"streamSid":"${SID}"}`,
    media:
      '{"event":"media","sequenceNumber":"2","media":{"track":"inbound","chunk":"1","timestamp":"155",' +
      `"payload":"${Buffer.alloc(160, 0xff).toString('base64')}"},"streamSid":"${SID}"}`,
    stop: `{"event":"stop","sequenceNumber":"378","streamSid":"${SID}","stop":{"accountSid":"${account}","callSid":"${call}"}}`,
  };

  it('every one parses, as JSON.parse reads it', () => {
    for (const [event, text] of Object.entries(frames)) {
      const parsed = parseMediaFrame(text);
      expect(parsed, event).toEqual({ ok: true, frame: JSON.parse(text) as unknown });
    }
  });

  it('a media frame takes the path without JSON.parse', () => {
    expect(scanMediaFrame(frames.media)).toEqual(JSON.parse(frames.media));
  });
});

describe('outbound messages', () => {
  it('are the documented shapes, with the sid and mark name escaped', () => {
    expect(JSON.parse(mediaMessage(SID, PAYLOAD))).toEqual({
      event: 'media',
      streamSid: SID,
      media: { payload: PAYLOAD },
    });
    expect(JSON.parse(markMessage(SID, 'g1.0.0'))).toEqual({
      event: 'mark',
      streamSid: SID,
      mark: { name: 'g1.0.0' },
    });
    expect(JSON.parse(clearMessage(SID))).toEqual({ event: 'clear', streamSid: SID });
    const odd = 'a"b\\c\n';
    expect(JSON.parse(markMessage(odd, odd))).toEqual({ event: 'mark', streamSid: odd, mark: { name: odd } });
    expect(JSON.parse(mediaMessage(odd, 'AA=='))).toMatchObject({ streamSid: odd });
  });
});
