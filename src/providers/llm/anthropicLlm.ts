/**
 * LlmClient over the Anthropic Messages API (raw stream). `baseURL` must NOT include `/v1`: the SDK
 * appends `/v1/messages` itself.
 *
 * JSON mode: Anthropic has no schema-free JSON switch, so `json: true` appends an instruction to the
 * system prompt. We do not prefill "{" as an assistant turn: newer Claude models reject prefill, and
 * it would make the streamed text differ from the model's own output.
 */
import Anthropic, {
  APIConnectionError,
  APIConnectionTimeoutError,
  APIError,
  APIUserAbortError,
  AnthropicError,
} from '@anthropic-ai/sdk';
import type { LlmClient, LlmPartial, LlmRequest, LlmResult, LlmUsage } from './llmClient.ts';
import { LlmError, endedEarlyError, llmHttpError } from './llmErrors.ts';
import { startDeadline, type RequestDeadline } from '../requestDeadline.ts';

export interface AnthropicLlmOptions {
  readonly apiKey: string;
  /** Defaults to the SDK's (ANTHROPIC_BASE_URL or https://api.anthropic.com); no `/v1`. */
  readonly baseURL?: string;
}

const JSON_INSTRUCTION =
  'Respond with a single JSON object and nothing else: no prose before or after it, no Markdown code fences.';

const NOTHING_STREAMED: LlmPartial = { text: '', usage: null, firstTokenMs: null, durationMs: 0 };

// Mid-stream error events of these types are the provider's trouble and may pass on a retry.
const RETRYABLE_STREAM_ERRORS = new Set([
  'overloaded_error',
  'api_error',
  'rate_limit_error',
  'timeout_error',
]);

/** Creates an Anthropic client. One SDK instance serves every request, so connections are reused. */
export function createAnthropicLlm(options: AnthropicLlmOptions): LlmClient {
  // No SDK retries: a phone turn cannot wait for backoff; callers decide (e.g. another provider).
  const client = new Anthropic({
    apiKey: options.apiKey,
    maxRetries: 0,
    ...(options.baseURL === undefined ? {} : { baseURL: options.baseURL }),
  });

  return {
    provider: 'anthropic',
    async preconnect({ signal, timeoutMs }) {
      // GET /v1/models is free; it leaves a kept-alive connection and a TLS session behind.
      const deadline = startDeadline(signal, timeoutMs);
      try {
        await client.models.list({ limit: 1 }, { signal: deadline.signal });
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
      let inputTokens = 0;
      // Output counts are only final once message_delta arrives; until then usage is unknown, so a
      // cut-short request reports null and cost is estimated (rather than trusting a lower bound).
      let outputTokens: number | null = null;
      let firstTokenMs: number | null = null;
      let finished = false;
      let callbackFailure: { readonly error: unknown } | null = null;
      const usage = (): LlmUsage | null => (outputTokens === null ? null : { inputTokens, outputTokens });
      const partial = (): LlmPartial => ({
        text,
        usage: usage(),
        firstTokenMs,
        durationMs: performance.now() - startedAt,
      });
      const system =
        request.json === true
          ? [request.system, JSON_INSTRUCTION].filter((s) => s !== '').join('\n\n')
          : request.system;

      try {
        const stream = await client.messages.create(
          {
            model: request.model,
            max_tokens: request.maxOutputTokens,
            messages: request.messages.map((m) => ({ role: m.role, content: m.content })),
            stream: true,
            ...(system === '' ? {} : { system }),
            ...(request.temperature === undefined ? {} : { temperature: request.temperature }),
          },
          { signal: deadline.signal },
        );
        // The SDK ends this loop quietly (no throw) when the signal aborts mid-stream.
        for await (const event of stream) {
          if (event.type === 'message_start') {
            inputTokens = event.message.usage.input_tokens;
          } else if (event.type === 'message_delta') {
            // Cumulative, so the last one is the total.
            outputTokens = event.usage.output_tokens;
          } else if (event.type === 'message_stop') {
            finished = true;
          } else if (event.type === 'content_block_delta' && event.delta.type === 'text_delta') {
            const delta = event.delta.text;
            if (delta === '') continue;
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
        }
      } catch (err) {
        throw translateError(err, deadline, partial(), request.timeoutMs);
      } finally {
        deadline.dispose();
      }

      if (callbackFailure !== null) throw callbackFailure.error;
      if (!finished) {
        if (deadline.endedBy !== null) {
          throw endedEarlyError(deadline.endedBy, 'anthropic', partial(), request.timeoutMs);
        }
        throw new LlmError('ERR_LLM_BAD_RESPONSE', 'anthropic stream ended without message_stop', {
          provider: 'anthropic',
          partial: partial(),
        });
      }
      return {
        text,
        provider: 'anthropic',
        model: request.model,
        usage: usage(),
        firstTokenMs,
        durationMs: performance.now() - startedAt,
      };
    },
  };
}

/** Maps whatever the SDK (or fetch beneath it) threw onto an LlmError; the deadline's verdict wins. */
function translateError(
  err: unknown,
  deadline: RequestDeadline,
  partial: LlmPartial,
  timeoutMs: number,
): LlmError {
  const provider = 'anthropic';
  if (deadline.endedBy !== null) return endedEarlyError(deadline.endedBy, provider, partial, timeoutMs);
  if (err instanceof APIConnectionTimeoutError)
    return endedEarlyError('timeout', provider, partial, timeoutMs);
  if (err instanceof APIUserAbortError) return endedEarlyError('aborted', provider, partial, timeoutMs);
  if (err instanceof APIConnectionError) {
    return new LlmError('ERR_LLM_CONNECTION', `anthropic connection failed: ${err.message}`, {
      provider,
      partial,
      retryable: true,
      cause: err,
    });
  }
  if (err instanceof APIError) {
    if (typeof err.status === 'number') return llmHttpError(provider, err.status, err.message, partial, err);
    // An `event: error` inside a 200 stream, e.g. overloaded_error.
    return new LlmError('ERR_LLM_HTTP', `anthropic reported an error mid-stream: ${err.message}`, {
      provider,
      partial,
      retryable: err.type !== null && RETRYABLE_STREAM_ERRORS.has(err.type),
      cause: err,
    });
  }
  if (err instanceof SyntaxError || err instanceof AnthropicError) {
    return new LlmError('ERR_LLM_BAD_RESPONSE', `anthropic sent a malformed stream: ${err.message}`, {
      provider,
      partial,
      cause: err,
    });
  }
  // Anything else came from reading the body, e.g. undici's "terminated" when the socket drops.
  return new LlmError('ERR_LLM_CONNECTION', `anthropic stream failed: ${String(err)}`, {
    provider,
    partial,
    retryable: true,
    cause: err,
  });
}
