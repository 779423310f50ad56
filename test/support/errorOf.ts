import { expect } from 'vitest';
import { LlmError } from '../../src/providers/llm/llmErrors.ts';

/**
 * The error a promise was rejected with, checked to be an instance of `type`; fails the test if the
 * promise resolved or rejected with anything else.
 */
export async function errorOf<E extends Error>(
  promise: Promise<unknown>,
  type: abstract new (...args: never[]) => E,
): Promise<E> {
  const err = await promise.then(
    () => {
      throw new Error(`expected a ${type.name}, but the promise resolved`);
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(type);
  return err as E;
}

/** The LlmError a request failed with (errorOf for the LLM adapters' tests). */
export const llmErrorOf = (promise: Promise<unknown>): Promise<LlmError> => errorOf(promise, LlmError);
