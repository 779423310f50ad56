/** Where the fakes listen: 127.0.0.1, on a given port or (0) one the system picks. */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * Starts listening and resolves with the port; rejects with the listen error (EADDRINUSE when a
 * fixed port is taken) instead of leaving it to crash the process as an unhandled 'error' event.
 */
export function listenLocal(server: Server, port = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    const fail = (err: Error) => reject(err);
    server.once('error', fail);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', fail);
      resolve((server.address() as AddressInfo).port);
    });
  });
}
