import { afterEach, describe, expect, it } from 'vitest';
import { AppError } from '../../src/errors.ts';
import {
  createOpenAiEmbedder,
  type OpenAiEmbedderOptions,
} from '../../src/providers/embeddings/openaiEmbedder.ts';
import {
  fakeEmbeddingOf,
  startFakeOpenAiServer,
  type FakeOpenAiOptions,
  type FakeOpenAiServer,
} from '../fakes/fakeOpenAiServer.ts';
import { errorOf } from '../support/errorOf.ts';

let server: FakeOpenAiServer | undefined;

afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function setUp(fake: FakeOpenAiOptions = {}, options: Partial<OpenAiEmbedderOptions> = {}) {
  server = await startFakeOpenAiServer(fake);
  const embedder = createOpenAiEmbedder({ apiKey: 'test-key', baseURL: server.baseURL, ...options });
  return { server, embedder };
}

/** What the embedder should return for `text`: the fake's vector, normalised. */
function expectedVector(text: string, dimensions = 1536): Float32Array {
  const raw = fakeEmbeddingOf(text, dimensions);
  const norm = Math.hypot(...raw);
  return raw.map((v) => v / norm);
}

function expectClose(actual: Float32Array | undefined, expected: Float32Array): void {
  expect(actual).toBeInstanceOf(Float32Array);
  expect(actual!.length).toBe(expected.length);
  let maxDiff = 0;
  for (let i = 0; i < expected.length; i++) maxDiff = Math.max(maxDiff, Math.abs(actual![i]! - expected[i]!));
  expect(maxDiff).toBeLessThan(1e-6);
}

function lengthOf(vector: Float32Array | undefined): number {
  return Math.hypot(...vector!);
}

const appErrorOf = (promise: Promise<unknown>) => errorOf(promise, AppError);

describe('createOpenAiEmbedder', () => {
  it('names itself after the model and reports its dimensions', async () => {
    const { embedder } = await setUp();
    expect(embedder.id).toBe('openai:text-embedding-3-small');
    expect(embedder.dimensions).toBe(1536);
  });

  it('asks for base64 with the bearer key and decodes it into the vectors the fake meant, at unit length', async () => {
    const { server, embedder } = await setUp();

    const [a, b] = await embedder.embed(['book a repair', 'cancel my visit']);

    expect(server.requests[0]?.body['encoding_format']).toBe('base64');
    expect(server.requests[0]?.headers.authorization).toBe('Bearer test-key');
    expectClose(a, expectedVector('book a repair'));
    expectClose(b, expectedVector('cancel my visit'));
    expect(lengthOf(a)).toBeCloseTo(1, 5);
    expect(lengthOf(b)).toBeCloseTo(1, 5);
  });

  it('gives the same vectors when the server answers float arrays', async () => {
    const { server, embedder } = await setUp({ embeddingEncoding: 'float' });

    const [a] = await embedder.embed(['book a repair']);

    expect(server.requests[0]?.body['encoding_format']).toBe('base64');
    expectClose(a, expectedVector('book a repair'));
  });

  it('coalesces concurrent calls in the same tick into one request', async () => {
    const { server, embedder } = await setUp({ embeddingDelayMs: 20 });

    const results = await Promise.all([
      embedder.embed(['one']),
      embedder.embed(['two', 'three']),
      embedder.embed(['four']),
    ]);

    expect(server.requests).toHaveLength(1);
    expect(server.requests[0]?.body['input']).toEqual(['one', 'two', 'three', 'four']);
    expectClose(results[0]?.[0], expectedVector('one'));
    expectClose(results[1]?.[0], expectedVector('two'));
    expectClose(results[1]?.[1], expectedVector('three'));
    expectClose(results[2]?.[0], expectedVector('four'));
  });

  it('splits a batch larger than maxBatch into several requests', async () => {
    const { server, embedder } = await setUp({}, { maxBatch: 2 });

    const vectors = await embedder.embed(['a', 'b', 'c', 'd', 'e']);

    expect(server.requests.map((r) => r.body['input'])).toEqual([['a', 'b'], ['c', 'd'], ['e']]);
    expectClose(vectors[4], expectedVector('e'));
  });

  it('serves a repeated text from the cache without a request', async () => {
    const { server, embedder } = await setUp();

    const [first] = await embedder.embed(['yes']);
    const [again] = await embedder.embed(['yes']);
    const [, fresh] = await embedder.embed(['yes', 'no']);

    expect(server.requests.map((r) => r.body['input'])).toEqual([['yes'], ['no']]);
    expectClose(again, first!);
    expectClose(fresh, expectedVector('no'));
  });

  it('asks once for a text repeated within one call or across concurrent calls', async () => {
    const { server, embedder } = await setUp();

    const [[a, b], [c]] = await Promise.all([embedder.embed(['yes', 'yes']), embedder.embed(['yes'])]);

    expect(server.requests[0]?.body['input']).toEqual(['yes']);
    expectClose(a, expectedVector('yes'));
    expectClose(b, expectedVector('yes'));
    expectClose(c, expectedVector('yes'));
  });

  it('hands out copies, so a caller mutating a vector cannot corrupt the cache', async () => {
    const { embedder } = await setUp();

    const [first] = await embedder.embed(['yes']);
    first!.fill(0);
    const [again] = await embedder.embed(['yes']);

    expectClose(again, expectedVector('yes'));
  });

  it('evicts the least recently used text when the cache is full', async () => {
    const { server, embedder } = await setUp({}, { cacheSize: 2 });

    await embedder.embed(['a']);
    await embedder.embed(['b']);
    await embedder.embed(['a']); // a is now the most recent
    await embedder.embed(['c']); // evicts b
    await embedder.embed(['a']);
    await embedder.embed(['b']);

    expect(server.requests.map((r) => r.body['input'])).toEqual([['a'], ['b'], ['c'], ['b']]);
  });

  it('asks for shortened vectors and names itself after the size', async () => {
    const { server, embedder } = await setUp({}, { dimensions: 256 });

    const [v] = await embedder.embed(['hello']);

    expect(embedder.id).toBe('openai:text-embedding-3-small@256');
    expect(embedder.dimensions).toBe(256);
    expect(server.requests[0]?.body['dimensions']).toBe(256);
    expectClose(v, expectedVector('hello', 256));
  });

  it('reports usage once per request', async () => {
    const usages: { model: string; inputTokens: number; durationMs: number }[] = [];
    const { server, embedder } = await setUp(
      { embeddingDelayMs: 30 },
      { model: 'text-embedding-3-large', onUsage: (u) => usages.push(u) },
    );

    await Promise.all([embedder.embed(['first text']), embedder.embed(['second text'])]);

    expect(usages).toHaveLength(1);
    expect(usages[0]?.model).toBe('text-embedding-3-large');
    expect(usages[0]?.inputTokens).toBe(server.requests[0]?.usageSent?.inputTokens);
    expect(usages[0]?.durationMs).toBeGreaterThanOrEqual(25);
    expect(embedder.dimensions).toBe(3072);
  });

  it('returns [] for no texts without a request', async () => {
    const { server, embedder } = await setUp();

    expect(await embedder.embed([])).toEqual([]);
    expect(server.requests).toHaveLength(0);
  });

  describe('failures', () => {
    it.each([
      [500, true],
      [429, true],
      [400, false],
    ])(
      'HTTP %i: ERR_EMBEDDINGS_FAILED (retryable %s), one request, nothing cached',
      async (status, retryable) => {
        const { server, embedder } = await setUp();
        server.script({ type: 'error', status });

        const err = await appErrorOf(embedder.embed(['hello']));

        expect(err.code).toBe('ERR_EMBEDDINGS_FAILED');
        expect(err.retryable).toBe(retryable);
        await new Promise((r) => setTimeout(r, 150));
        expect(server.requests).toHaveLength(1);
        // Not cached: the next call asks again and succeeds.
        expectClose((await embedder.embed(['hello']))[0], expectedVector('hello'));
        expect(server.requests).toHaveLength(2);
      },
    );

    it("quotes the provider's message with the API key masked", async () => {
      const { server, embedder } = await setUp();
      server.script({ type: 'error', status: 401, message: 'Incorrect API key provided: test-key' });

      const err = await appErrorOf(embedder.embed(['hello']));

      expect(err.code).toBe('ERR_EMBEDDINGS_FAILED');
      expect(err.message).toContain('HTTP 401');
      expect(err.message).toContain('Incorrect API key provided');
      expect(err.message).not.toContain('test-key');
    });

    it('an answer that is not JSON: ERR_EMBEDDINGS_FAILED, not retryable, nothing cached', async () => {
      const { server, embedder } = await setUp();
      server.script({ type: 'garbage', body: '<html>gateway</html>' });

      const err = await appErrorOf(embedder.embed(['hello']));

      expect(err.code).toBe('ERR_EMBEDDINGS_FAILED');
      expect(err.retryable).toBe(false);
      expectClose((await embedder.embed(['hello']))[0], expectedVector('hello'));
    });

    it('a refused connection: ERR_EMBEDDINGS_FAILED, retryable', async () => {
      const { server } = await setUp();
      const baseURL = server.baseURL;
      await server.close();
      const embedder = createOpenAiEmbedder({ apiKey: 'test-key', baseURL });

      const err = await appErrorOf(embedder.embed(['hello']));

      expect(err.code).toBe('ERR_EMBEDDINGS_FAILED');
      expect(err.retryable).toBe(true);
    });

    it('rejects every caller sharing a failed batch', async () => {
      const { server, embedder } = await setUp();
      server.script({ type: 'error', status: 503 });

      const results = await Promise.allSettled([embedder.embed(['a']), embedder.embed(['b'])]);

      expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
      expect(server.requests).toHaveLength(1);
    });

    it('vectors of the wrong size (a server ignoring dimensions): ERR_EMBEDDINGS_FAILED, usage still reported', async () => {
      const usages: number[] = [];
      const { embedder } = await setUp(
        { embeddingDimensions: 512 },
        { dimensions: 256, onUsage: (u) => usages.push(u.inputTokens) },
      );

      const err = await appErrorOf(embedder.embed(['hello']));

      expect(err.code).toBe('ERR_EMBEDDINGS_FAILED');
      expect(err.message).toContain('512');
      // The provider answered, so the request was billed.
      expect(usages).toHaveLength(1);
      expect(usages[0]).toBeGreaterThan(0);
    });

    it('an answer missing one of the inputs: ERR_EMBEDDINGS_FAILED for all, nothing cached', async () => {
      const { server, embedder } = await setUp({}, { dimensions: 4 });
      // Two inputs asked for, one vector answered (a 200 with this JSON as it is).
      const one = Buffer.from(new Float32Array([1, 2, 3, 4]).buffer).toString('base64');
      server.script({
        type: 'garbage',
        body: JSON.stringify({ data: [{ index: 0, embedding: one }], usage: { prompt_tokens: 2 } }),
      });

      const results = await Promise.allSettled([embedder.embed(['first']), embedder.embed(['second'])]);

      expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
      const err = (results[1] as PromiseRejectedResult).reason as AppError;
      expect(err.code).toBe('ERR_EMBEDDINGS_FAILED');
      expect(err.message).toContain('no embedding for input 1');
      expect(server.requests).toHaveLength(1);
      // Not cached: asked again, the fake now answers both.
      expectClose((await embedder.embed(['first']))[0], expectedVector('first', 4));
      expect(server.requests).toHaveLength(2);
    });

    it('an answer larger than a full batch can be is cut off: ERR_EMBEDDINGS_FAILED', async () => {
      // One input of 16 floats: the limit is 1 MiB of JSON around it plus 400 bytes.
      const { server, embedder } = await setUp({}, { maxBatch: 1, dimensions: 16 });
      server.script({ type: 'garbage', body: 'x'.repeat(1024 * 1024 + 1000) });

      const err = await appErrorOf(embedder.embed(['hello']));

      expect(err.code).toBe('ERR_EMBEDDINGS_FAILED');
      expect(err.message).toMatch(/larger than \d+ bytes/);
    });

    it('timeout: ERR_EMBEDDINGS_FAILED, retryable', async () => {
      const { embedder } = await setUp({ embeddingDelayMs: 2000 }, { timeoutMs: 100 });

      const err = await appErrorOf(embedder.embed(['hello']));

      expect(err.code).toBe('ERR_EMBEDDINGS_FAILED');
      expect(err.retryable).toBe(true);
    });

    it('an empty string is refused without a request', async () => {
      const { server, embedder } = await setUp();

      expect((await appErrorOf(embedder.embed(['']))).code).toBe('ERR_EMBEDDINGS_FAILED');
      expect(server.requests).toHaveLength(0);
    });

    it('an already-aborted signal: ERR_ABORTED without a request', async () => {
      const { server, embedder } = await setUp();

      expect((await appErrorOf(embedder.embed(['hello'], AbortSignal.abort()))).code).toBe('ERR_ABORTED');
      await new Promise((r) => setTimeout(r, 20));
      expect(server.requests).toHaveLength(0);
    });

    it('abort rejects the caller with ERR_ABORTED; the shared request still fills the cache', async () => {
      const { server, embedder } = await setUp({ embeddingDelayMs: 100 });
      const controller = new AbortController();

      const pending = embedder.embed(['hello'], controller.signal);
      setTimeout(() => controller.abort(), 10);
      expect((await appErrorOf(pending)).code).toBe('ERR_ABORTED');

      await server.settled(0);
      await new Promise((r) => setTimeout(r, 10));
      expectClose((await embedder.embed(['hello']))[0], expectedVector('hello'));
      expect(server.requests).toHaveLength(1);
    });
  });
});
