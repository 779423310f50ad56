import type { LlmRequest } from '../../src/providers/llm/llmClient.ts';

/** A short receptionist request to `model`, as the LLM adapter tests send it; `overrides` win. */
export function llmRequest(model: string, overrides: Partial<LlmRequest> = {}): LlmRequest {
  return {
    model,
    system: 'You are a terse receptionist.',
    messages: [{ role: 'user', content: 'When can someone come?' }],
    maxOutputTokens: 200,
    timeoutMs: 5000,
    ...overrides,
  };
}
