/** The TwiML the engine answers with, as exact strings (what Twilio parses). */
import { describe, expect, test } from 'vitest';
import { dialTwiml, mediaStreamTwiml } from '../../src/twilio/twiml.ts';

const XML_DECL = '<?xml version="1.0" encoding="UTF-8"?>';

describe('mediaStreamTwiml', () => {
  test('Connect with an action, one Stream, its parameters in order', () => {
    expect(
      mediaStreamTwiml({
        streamUrl: 'wss://voice.example.com/twilio/media',
        actionUrl: 'https://voice.example.com/twilio/connect-action',
        parameters: { companyId: 'acme', wsToken: 'tok.sig' },
      }),
    ).toBe(
      XML_DECL +
        '<Response><Connect action="https://voice.example.com/twilio/connect-action">' +
        '<Stream url="wss://voice.example.com/twilio/media">' +
        '<Parameter name="companyId" value="acme"/>' +
        '<Parameter name="wsToken" value="tok.sig"/>' +
        '</Stream></Connect></Response>',
    );
  });

  test('a status callback is POSTed', () => {
    expect(
      mediaStreamTwiml({
        streamUrl: 'wss://voice.example.com/twilio/media',
        actionUrl: 'https://voice.example.com/a',
        parameters: {},
        statusCallbackUrl: 'https://voice.example.com/twilio/stream-status',
      }),
    ).toBe(
      XML_DECL +
        '<Response><Connect action="https://voice.example.com/a">' +
        '<Stream url="wss://voice.example.com/twilio/media" ' +
        'statusCallback="https://voice.example.com/twilio/stream-status" statusCallbackMethod="POST"/>' +
        '</Connect></Response>',
    );
  });

  test('attribute values are escaped', () => {
    const xml = mediaStreamTwiml({
      streamUrl: 'wss://voice.example.com/media',
      actionUrl: 'https://voice.example.com/a?x=1&y="2"',
      parameters: { 'say "hi"': `Tom & Jerry's "<show>"` },
    });
    expect(xml).toContain('<Connect action="https://voice.example.com/a?x=1&amp;y=&quot;2&quot;">');
    expect(xml).toContain(
      `<Parameter name="say &quot;hi&quot;" value="Tom &amp; Jerry's &quot;&lt;show>&quot;"/>`,
    );
    // `>` may stay literal in an attribute; `<`, `&` and `"` may not. Decoded, the value is the original.
    const value = /<Parameter name="[^"]*" value="([^"]*)"/.exec(xml)![1]!;
    const decoded = value.replace(
      /&(lt|gt|quot|apos|amp);/g,
      (_m, e: string) => ({ lt: '<', gt: '>', quot: '"', apos: "'", amp: '&' })[e]!,
    );
    expect(decoded).toBe(`Tom & Jerry's "<show>"`);
  });

  test('a query string in the stream URL is refused (Twilio drops it)', () => {
    for (const streamUrl of ['wss://voice.example.com/media?token=abc', 'wss://voice.example.com/media?']) {
      const make = () => mediaStreamTwiml({ streamUrl, actionUrl: 'https://x/a', parameters: {} });
      expect(make).toThrow(/query string/);
      expect(make).toThrow(expect.objectContaining({ code: 'ERR_TWIML_INVALID' }));
    }
  });

  test('only WebSocket URLs are accepted; ws:// for local fakes', () => {
    const make = (streamUrl: string) => () =>
      mediaStreamTwiml({ streamUrl, actionUrl: 'https://x/a', parameters: {} });
    expect(make('https://voice.example.com/media')).toThrow(
      expect.objectContaining({ code: 'ERR_TWIML_INVALID' }),
    );
    expect(make('/twilio/media')).toThrow(expect.objectContaining({ code: 'ERR_TWIML_INVALID' }));
    expect(make('ws://127.0.0.1:8080/twilio/media')()).toContain(
      '<Stream url="ws://127.0.0.1:8080/twilio/media"',
    );
  });
});

describe('dialTwiml', () => {
  test('a Dial of the number', () => {
    expect(dialTwiml('+15557654321')).toBe(`${XML_DECL}<Response><Dial>+15557654321</Dial></Response>`);
  });
});
