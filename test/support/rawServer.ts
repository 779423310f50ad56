/**
 * A bare HTTP server for provider tests that need streams the fakes cannot produce (bytes written
 * one at a time, lines split anywhere): each request's body is read, then `answer` writes the reply.
 */
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export async function startRawServer(
  answer: (res: ServerResponse) => Promise<void>,
  /** Appended to the origin in `baseURL`, e.g. `/v1` for OpenAI-style base URLs. */
  basePath = '',
): Promise<{ baseURL: string; close(): Promise<void> }> {
  const raw = createServer((req, res) => {
    req.resume();
    req.on('end', () => void answer(res));
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
