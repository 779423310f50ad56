import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { readBody } from '../src/readBody.ts';

describe('readBody', () => {
  it('reads a body to its end', async () => {
    const stream = new PassThrough();
    const read = readBody(stream, 10);
    stream.write('abc');
    stream.end('def');
    expect(await read).toEqual({ body: Buffer.from('abcdef'), truncated: false });
  });

  it('cuts a longer body at maxBytes and destroys the stream', async () => {
    const stream = new PassThrough();
    const read = readBody(stream, 5);
    stream.write('abc');
    stream.write('defgh');
    const { body, truncated } = await read;
    expect(body.toString()).toBe('abcde');
    expect(truncated).toBe(true);
    expect(stream.destroyed).toBe(true);
  });

  it('a body of exactly maxBytes is whole', async () => {
    const stream = new PassThrough();
    const read = readBody(stream, 3);
    stream.end('abc');
    expect(await read).toEqual({ body: Buffer.from('abc'), truncated: false });
  });

  it('rejects when the stream fails or closes before its end', async () => {
    const failing = new PassThrough();
    const failed = readBody(failing, 10);
    failing.destroy(new Error('reset'));
    await expect(failed).rejects.toThrow('reset');

    const closing = new PassThrough();
    const closed = readBody(closing, 10);
    closing.write('ab');
    closing.destroy();
    await expect(closed).rejects.toThrow('closed before its end');
  });
});
