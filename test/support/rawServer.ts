/**
 * A bare HTTP server for provider tests that need streams the fakes cannot produce: every request's
 * body is read, then the answer is `body` as an event stream, written one byte at a time (lines and
 * multi-byte characters split everywhere).
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

export async function startTricklingServer(
  body: string,
  /** Appended to the origin in `baseURL`, e.g. `/v1` for OpenAI-style base URLs. */
  basePath = '',
): Promise<{ baseURL: string; close(): Promise<void> }> {
  const bytes = Buffer.from(body, 'utf8');
  const raw = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      void (async () => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        for (const byte of bytes) {
          res.write(Buffer.of(byte));
          await new Promise((r) => setImmediate(r));
        }
        res.end();
      })();
    });
  });
  await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
  return {
    baseURL: `http://127.0.0.1:${(raw.address() as AddressInfo).port}${basePath}`,
    close: async () => {
      raw.closeAllConnections();
      await new Promise<void>((resolve) => raw.close(() => resolve()));
    },
  };
}
