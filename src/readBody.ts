/**
 * Reads an HTTP body (a request on the server, a response in a provider client) into memory, at
 * most `maxBytes` of it. A longer body is cut there and the stream destroyed (its connection
 * closed), and the result says so; each caller decides what that means (413, a cut error message).
 * A body that fails or closes before its end rejects, so no reader waits forever on a peer that left.
 */
import type { Readable } from 'node:stream';

export interface BodyRead {
  readonly body: Buffer;
  /** The body was longer than `maxBytes`: `body` holds its first `maxBytes`. */
  readonly truncated: boolean;
}

export function readBody(stream: Readable, maxBytes: number): Promise<BodyRead> {
  return new Promise<BodyRead>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const detach = () => {
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onError);
      stream.off('close', onClose);
    };
    const onData = (chunk: Buffer) => {
      const room = maxBytes - size;
      if (chunk.length > room) {
        chunks.push(chunk.subarray(0, room));
        detach();
        stream.destroy();
        resolve({ body: Buffer.concat(chunks), truncated: true });
        return;
      }
      chunks.push(chunk);
      size += chunk.length;
    };
    const onEnd = () => {
      detach();
      resolve({ body: Buffer.concat(chunks), truncated: false });
    };
    const onError = (err: Error) => {
      detach();
      reject(err);
    };
    const onClose = () => {
      detach();
      reject(new Error('the body closed before its end'));
    };
    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('error', onError);
    stream.on('close', onClose);
  });
}
