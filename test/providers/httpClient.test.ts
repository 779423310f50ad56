import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isAbortError } from '../../src/errors.ts';
import {
  HttpAbortError,
  HttpAnswerError,
  MAX_ERROR_BODY_BYTES,
  createHttpClient,
  drainBody,
  providerMessage,
  readBodyText,
  readJsonBody,
  type HttpClient,
} from '../../src/providers/http/httpClient.ts';
import { errorOf } from '../support/errorOf.ts';
import { waitFor } from '../support/waitFor.ts';

/** What the test server saw of one request. */
interface Seen {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingMessage['headers'];
  readonly body: string;
  readonly clientPort: number;
  /** Set when the connection closed before the answer was complete. */
  clientWentAway: boolean;
}

type Handler = (res: ServerResponse, seen: Seen) => void;

let server: Server;
let baseURL: string;
let handler: Handler;
let seen: Seen[];
let connections: number;
let openSockets: Set<Socket>;
let client: HttpClient;

beforeEach(async () => {
  seen = [];
  connections = 0;
  openSockets = new Set();
  handler = (res) => res.end('ok');
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const record: Seen = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
        clientPort: req.socket.remotePort ?? 0,
        clientWentAway: false,
      };
      seen.push(record);
      res.on('close', () => {
        if (!res.writableEnded) record.clientWentAway = true;
      });
      handler(res, record);
    });
  });
  server.on('connection', (socket: Socket) => {
    connections++;
    openSockets.add(socket);
    socket.on('close', () => openSockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseURL = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  client = createHttpClient({ baseURL, apiKey: 'sk-test-secret-key' });
});

afterEach(async () => {
  client.close();
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

const never = new AbortController().signal;

describe('createHttpClient', () => {
  it('sends the method, the path under the base path, the JSON body and its headers', async () => {
    const response = await client.request({
      method: 'POST',
      path: '/chat/completions',
      json: { model: 'm', text: 'Grüße' },
      accept: 'text/event-stream',
      signal: never,
    });
    expect(response.status).toBe(200);
    expect(await readBodyText(response.body, 1000)).toBe('ok');

    const [sent] = seen;
    expect(sent).toMatchObject({ method: 'POST', url: '/v1/chat/completions' });
    expect(JSON.parse(sent!.body)).toEqual({ model: 'm', text: 'Grüße' });
    expect(sent!.headers).toMatchObject({
      authorization: 'Bearer sk-test-secret-key',
      'content-type': 'application/json',
      'content-length': String(Buffer.byteLength(sent!.body)),
      accept: 'text/event-stream',
      connection: 'keep-alive',
    });
    expect(sent!.headers['user-agent']).toMatch(/^switchboard/);
  });

  it('sends a raw body as it is, with its content type and length', async () => {
    const text = '--x\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper\r\n--x--\r\n';
    const data = new Uint8Array(Buffer.from(text));
    const response = await client.request({
      method: 'POST',
      path: '/audio/transcriptions',
      body: { contentType: 'multipart/form-data; boundary=x', data },
      signal: never,
    });
    await readBodyText(response.body, 1000);
    const [sent] = seen;
    expect(sent!.body).toBe(text);
    expect(sent!.headers).toMatchObject({
      'content-type': 'multipart/form-data; boundary=x',
      'content-length': String(data.byteLength),
    });
  });

  it('refuses a request with both json and body, without a request', async () => {
    await expect(
      client.request({
        method: 'POST',
        path: '/x',
        json: {},
        body: { contentType: 'text/plain', data: new Uint8Array(1) },
        signal: never,
      }),
    ).rejects.toThrow(/json or body/);
    expect(seen).toHaveLength(0);
  });

  it('sends the fixed headers with every request; they cannot replace the ones the client sets', async () => {
    const versioned = createHttpClient({
      baseURL,
      apiKey: 'sk-test-secret-key',
      headers: {
        'anthropic-version': '2026-10-21',
        authorization: 'Bearer other',
        accept: 'text/html',
        'user-agent': 'other',
      },
    });
    for (const request of [
      { method: 'GET', path: '/models', signal: never },
      { method: 'POST', path: '/messages', json: {}, accept: 'text/event-stream', signal: never },
    ] as const) {
      await drainBody((await versioned.request(request)).body);
    }
    versioned.close();

    expect(seen).toHaveLength(2);
    for (const sent of seen) {
      expect(sent.headers['anthropic-version']).toBe('2026-10-21');
      expect(sent.headers.authorization).toBe('Bearer sk-test-secret-key');
      expect(sent.headers['user-agent']).toMatch(/^switchboard/);
    }
    expect(seen.map((s) => s.headers.accept)).toEqual(['application/json', 'text/event-stream']);
  });

  it('a GET has no body, and a trailing slash on the base URL is not doubled', async () => {
    const slashed = createHttpClient({ baseURL: `${baseURL}/`, apiKey: 'k' });
    const response = await slashed.request({ method: 'GET', path: '/models', signal: never });
    await drainBody(response.body);
    slashed.close();
    expect(seen[0]).toMatchObject({ method: 'GET', url: '/v1/models', body: '' });
    expect(seen[0]!.headers['content-type']).toBeUndefined();
    expect(seen[0]!.headers.accept).toBe('application/json');
  });

  it('returns a fully read socket to the pool: the next request rides the same connection', async () => {
    for (let i = 0; i < 3; i++) {
      const response = await client.request({ method: 'POST', path: '/x', json: {}, signal: never });
      await drainBody(response.body);
    }
    expect(connections).toBe(1);
    expect(new Set(seen.map((s) => s.clientPort)).size).toBe(1);
  });

  it('chooses TLS for an https base URL (here refused: the server speaks plain HTTP)', async () => {
    const tls = createHttpClient({ baseURL: baseURL.replace('http:', 'https:'), apiKey: 'k' });
    const err = await tls.request({ method: 'GET', path: '/models', signal: never }).catch((e: unknown) => e);
    tls.close();
    expect(err).toBeInstanceOf(Error);
    expect((err as NodeJS.ErrnoException).code).toMatch(/SSL|EPROTO|ECONNRESET/);
    expect(seen).toHaveLength(0);
  });

  it('refuses a base URL that is not http(s)', () => {
    expect(() => createHttpClient({ baseURL: 'ftp://example.com/v1', apiKey: 'k' })).toThrow(/http/);
  });

  it('rejects with the connection error when nothing listens', async () => {
    const port = (server.address() as AddressInfo).port;
    client.close();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const err = await createHttpClient({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'k' })
      .request({ method: 'GET', path: '/models', signal: never })
      .catch((e: unknown) => e);
    expect((err as NodeJS.ErrnoException).code).toBe('ECONNREFUSED');
    server = createServer().listen(0, '127.0.0.1'); // for afterEach
  });

  it('keeps a request in flight past the idle-socket timeout (that timeout is for idle sockets only)', async () => {
    const quick = createHttpClient({ baseURL, apiKey: 'k', idleSocketTimeoutMs: 30 });
    handler = (res) => setTimeout(() => res.end('late'), 150);
    const response = await quick.request({ method: 'GET', path: '/slow', signal: never });
    expect(await readBodyText(response.body, 100)).toBe('late');
    // Idle in the pool, the socket is closed once the timeout passes.
    await waitFor(() => openSockets.size === 0, 2000, 'the idle socket closed');
    quick.close();
  });

  describe('abort', () => {
    it('an already-aborted signal makes no request and opens no connection', async () => {
      const err = await client
        .request({ method: 'POST', path: '/x', json: {}, signal: AbortSignal.abort() })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(HttpAbortError);
      expect(isAbortError(err)).toBe(true);
      await new Promise((r) => setTimeout(r, 50));
      expect(connections).toBe(0);
    });

    it('before the headers: rejects with HttpAbortError and closes the connection', async () => {
      handler = () => undefined; // never answers
      const controller = new AbortController();
      const pending = client.request({ method: 'POST', path: '/x', json: {}, signal: controller.signal });
      await waitFor(() => seen.length === 1);
      controller.abort();
      await expect(pending).rejects.toBeInstanceOf(HttpAbortError);
      await waitFor(() => seen[0]!.clientWentAway, 2000, 'the server saw the hang-up');
      expect(openSockets.size).toBe(0);
    });

    it('mid-body: the body fails with HttpAbortError, the socket is closed, the next request reconnects', async () => {
      handler = (res) => {
        res.writeHead(200, { 'content-type': 'audio/pcm' });
        res.write(Buffer.alloc(100));
      };
      const controller = new AbortController();
      const response = await client.request({
        method: 'POST',
        path: '/x',
        json: {},
        signal: controller.signal,
      });
      const chunks = response.body[Symbol.asyncIterator]();
      await chunks.next();
      controller.abort();
      await expect(chunks.next()).rejects.toBeInstanceOf(HttpAbortError);
      await waitFor(() => seen[0]!.clientWentAway, 2000, 'the server saw the hang-up');

      handler = (res) => res.end('ok');
      await drainBody((await client.request({ method: 'GET', path: '/y', signal: never })).body);
      expect(connections).toBe(2);
    });

    it('after the body was read, aborting changes nothing and the socket stays pooled', async () => {
      const controller = new AbortController();
      const response = await client.request({ method: 'GET', path: '/x', signal: controller.signal });
      await drainBody(response.body);
      controller.abort();
      await drainBody((await client.request({ method: 'GET', path: '/y', signal: never })).body);
      expect(connections).toBe(1);
    });

    it('destroying an unfinished body closes its socket', async () => {
      handler = (res) => {
        res.writeHead(200);
        res.write('partial');
      };
      const response = await client.request({ method: 'GET', path: '/x', signal: never });
      response.body.destroy();
      await waitFor(() => seen[0]!.clientWentAway, 2000, 'the server saw the hang-up');
    });
  });

  describe('errorMessage', () => {
    async function messageFor(status: number, body: string | Buffer): Promise<string> {
      handler = (res) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(body);
      };
      const response = await client.request({ method: 'POST', path: '/x', json: {}, signal: never });
      expect(response.status).toBe(status);
      return client.errorMessage(response);
    }

    it("takes the provider's message from the JSON body and returns the socket to the pool", async () => {
      expect(await messageFor(400, JSON.stringify({ error: { message: 'Bad voice.', type: 'x' } }))).toBe(
        'Bad voice.',
      );
      expect(await messageFor(500, JSON.stringify({ object: 'error', message: 'Model not loaded' }))).toBe(
        'Model not loaded',
      );
      expect(await messageFor(502, '<html>Bad Gateway</html>')).toBe('<html>Bad Gateway</html>');
      expect(await messageFor(503, '')).toBe('(no body)');
      expect(connections).toBe(1);
    });

    it('masks the API key should the provider echo it', async () => {
      const message = await messageFor(
        401,
        JSON.stringify({ error: { message: 'Incorrect API key provided: sk-test-secret-key.' } }),
      );
      expect(message).toBe('Incorrect API key provided: [api key].');
    });

    it('redact masks the key in any text; a key too short to mask safely is left alone', () => {
      expect(client.redact('key sk-test-secret-key, again sk-test-secret-key')).toBe(
        'key [api key], again [api key]',
      );
      expect(createHttpClient({ baseURL, apiKey: 'k' }).redact('a kind word')).toBe('a kind word');
    });

    it('reads at most MAX_ERROR_BODY_BYTES, then closes the connection', async () => {
      const huge = Buffer.alloc(MAX_ERROR_BODY_BYTES * 4, 'a');
      const message = await messageFor(500, huge);
      expect(message.length).toBeLessThanOrEqual(1001);
      // The server wrote the whole body at once, so it only sees its socket close.
      await waitFor(() => openSockets.size === 0, 2000, 'the connection closed');
    });
  });
});

describe('readBodyText', () => {
  it('cuts at maxBytes and destroys the rest; reads a body of exactly maxBytes whole', async () => {
    handler = (res) => res.end('0123456789');
    const cut = await client.request({ method: 'GET', path: '/x', signal: never });
    expect(await readBodyText(cut.body, 4)).toBe('0123');
    expect(cut.body.destroyed).toBe(true);
    const whole = await client.request({ method: 'GET', path: '/x', signal: never });
    expect(await readBodyText(whole.body, 10)).toBe('0123456789');
    expect(whole.body.complete).toBe(true);
  });
});

describe('readJsonBody', () => {
  it('parses a whole answer; refuses a longer or non-JSON one with HttpAnswerError', async () => {
    handler = (res) => res.end('{"text":"hello"}');
    const ok = await client.request({ method: 'GET', path: '/x', signal: never });
    expect(await readJsonBody(ok.body, 16)).toEqual({ text: 'hello' });

    const long = await client.request({ method: 'GET', path: '/x', signal: never });
    const tooLong = await errorOf(readJsonBody(long.body, 15), HttpAnswerError);
    expect(tooLong.message).toBe('the answer is larger than 15 bytes');
    expect(long.body.destroyed).toBe(true);

    handler = (res) => res.end('<html>gateway</html>');
    const html = await client.request({ method: 'GET', path: '/x', signal: never });
    expect((await errorOf(readJsonBody(html.body, 1000), HttpAnswerError)).message).toBe(
      'the answer is not JSON',
    );
  });
});

describe('providerMessage', () => {
  it('reads the common error shapes and cuts long messages', () => {
    expect(providerMessage('{"error":{"message":"Nope."}}')).toBe('Nope.');
    expect(providerMessage('{"error":"Nope."}')).toBe('Nope.');
    expect(providerMessage('{"error":{"code":"x"}}')).toBe('{"code":"x"}');
    expect(providerMessage('{"detail":"x"}')).toBe('{"detail":"x"}');
    expect(providerMessage('  plain text \n')).toBe('plain text');
    expect(providerMessage('')).toBe('(no body)');
    expect(providerMessage('x'.repeat(5000))).toHaveLength(1001);
  });
});
