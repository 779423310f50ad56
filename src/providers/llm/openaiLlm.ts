/**
 * LlmClient over OpenAI Chat Completions (streamed). Works with any OpenAI-compatible server through
 * `baseURL` (which must include `/v1`).
 */
import OpenAI, {
  APIConnectionError,
  APIConnectionTimeoutError,
  APIError,
  APIUserAbortError,
  OpenAIError,
} from 'openai';
import type { ChatCompletionMessageParam } from 'openai/resources/chat/completions';
import type { LlmClient, LlmPartial, LlmRequest, LlmResult, LlmUsage } from './llmClient.ts';
import { LlmError, endedEarlyError, llmHttpError } from './llmErrors.ts';
import { startDeadline, type RequestDeadline } from '../requestDeadline.ts';

export interface OpenAiLlmOptions {
  readonly apiKey: string;
  /** Defaults to the SDK's (OPENAI_BASE_URL or https://api.openai.com/v1). */
  readonly baseURL?: string;
}

// OpenAI rejects JSON mode unless the messages mention "json"; callers' prompts usually do.
const JSON_INSTRUCTION = 'Answer with a single JSON object.';

const NOTHING_STREAMED: LlmPartial = { text: '', usage: null, firstTokenMs: null, durationMs: 0 };

/** Creates an OpenAI chat client. One SDK instance serves every request, so connections are reused. */
export function createOpenAiLlm(options: OpenAiLlmOptions): LlmClient {
  // No SDK retries: a phone turn cannot wait for backoff; callers decide (e.g. another provider).
  const client = new OpenAI({
    apiKey: options.apiKey,
    maxRetries: 0,
    ...(options.baseURL === undefined ? {} : { baseURL: options.baseURL }),
  });

  return {
    provider: 'openai',
    async preconnect({ signal, timeoutMs }) {
      // GET /models is free; it leaves a kept-alive connection and a TLS session behind.
      const deadline = startDeadline(signal, timeoutMs);
      try {
        await client.models.list({ signal: deadline.signal });
      } catch (err) {
        throw translateError(err, deadline, NOTHING_STREAMED, timeoutMs);
      } finally {
        deadline.dispose();
      }
    },
    async complete(request: LlmRequest): Promise<LlmResult> {
      const startedAt = performance.now();
      const deadline = startDeadline(request.signal, request.timeoutMs);
      let text = '';
      let usage: LlmUsage | null = null;
      let firstTokenMs: number | null = null;
      let finished = false;
      let callbackFailure: { readonly error: unknown } | null = null;
      const partial = (): LlmPartial => ({
        text,
        usage,
        firstTokenMs,
        durationMs: performance.now() - startedAt,
      });

      try {
        const stream = await client.chat.completions.create(
          {
            model: request.model,
            messages: toMessages(request),
            max_completion_tokens: request.maxOutputTokens,
            stream: true,
            stream_options: { include_usage: true },
            ...(request.json === true ? { response_format: { type: 'json_object' } } : {}),
            ...(request.temperature === undefined ? {} : { temperature: request.temperature }),
          },
          { signal: deadline.signal },
        );
        // The SDK ends this loop quietly (no throw) when the signal aborts mid-stream.
        for await (const chunk of stream) {
          if (chunk.usage) {
            usage = { inputTokens: chunk.usage.prompt_tokens, outputTokens: chunk.usage.completion_tokens };
          }
          const choice = chunk.choices[0];
          const delta = choice?.delta?.content;
          if (delta) {
            firstTokenMs ??= performance.now() - startedAt;
            text += delta;
            try {
              request.onToken?.(delta);
            } catch (error) {
              // Leaving the loop closes the stream; the caller's own error is rethrown unchanged.
              callbackFailure = { error };
              break;
            }
          }
          if (choice?.finish_reason) finished = true;
        }
      } catch (err) {
        throw translateError(err, deadline, partial(), request.timeoutMs);
      } finally {
        deadline.dispose();
      }

      if (callbackFailure !== null) throw callbackFailure.error;
      if (!finished) {
        if (deadline.endedBy !== null) {
          throw endedEarlyError(deadline.endedBy, 'openai', partial(), request.timeoutMs);
        }
        throw new LlmError('ERR_LLM_BAD_RESPONSE', 'openai stream ended without a finish_reason', {
          provider: 'openai',
          partial: partial(),
        });
      }
      return {
        text,
        provider: 'openai',
        model: request.model,
        usage,
        firstTokenMs,
        durationMs: performance.now() - startedAt,
      };
    },
  };
}

function toMessages(request: LlmRequest): ChatCompletionMessageParam[] {
  let system = request.system;
  if (request.json === true && !/json/i.test([system, ...request.messages.map((m) => m.content)].join(' '))) {
    system = system === '' ? JSON_INSTRUCTION : `${system}\n\n${JSON_INSTRUCTION}`;
  }
  return [
    ...(system === '' ? [] : [{ role: 'system' as const, content: system }]),
    ...request.messages.map((m) => ({ role: m.role, content: m.content })),
  ];
}

/** Maps whatever the SDK (or fetch beneath it) threw onto an LlmError; the deadline's verdict wins. */
function translateError(
  err: unknown,
  deadline: RequestDeadline,
  partial: LlmPartial,
  timeoutMs: number,
): LlmError {
  const provider = 'openai';
  if (deadline.endedBy !== null) return endedEarlyError(deadline.endedBy, provider, partial, timeoutMs);
  if (err instanceof APIConnectionTimeoutError)
    return endedEarlyError('timeout', provider, partial, timeoutMs);
  if (err instanceof APIUserAbortError) return endedEarlyError('aborted', provider, partial, timeoutMs);
  if (err instanceof APIConnectionError) {
    return new LlmError('ERR_LLM_CONNECTION', `openai connection failed: ${err.message}`, {
      provider,
      partial,
      retryable: true,
      cause: err,
    });
  }
  if (err instanceof APIError) {
    if (typeof err.status === 'number') return llmHttpError(provider, err.status, err.message, partial, err);
    // An error object inside a 200 stream: the provider gave up mid-answer.
    return new LlmError('ERR_LLM_HTTP', `openai reported an error mid-stream: ${err.message}`, {
      provider,
      partial,
      retryable: true,
      cause: err,
    });
  }
  if (err instanceof SyntaxError || err instanceof OpenAIError) {
    return new LlmError('ERR_LLM_BAD_RESPONSE', `openai sent a malformed stream: ${err.message}`, {
      provider,
      partial,
      cause: err,
    });
  }
  // Anything else came from reading the body, e.g. undici's "terminated" when the socket drops.
  return new LlmError('ERR_LLM_CONNECTION', `openai stream failed: ${String(err)}`, {
    provider,
    partial,
    retryable: true,
    cause: err,
  });
}
