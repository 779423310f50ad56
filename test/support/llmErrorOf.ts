import { expect } from 'vitest';
import { LlmError } from '../../src/providers/llm/llmErrors.ts';

/** The LlmError a request failed with; fails the test if it succeeded or threw anything else. */
export async function llmErrorOf(promise: Promise<unknown>): Promise<LlmError> {
  const err = await promise.then(
    () => {
      throw new Error('expected the request to fail');
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(LlmError);
  return err as LlmError;
}
