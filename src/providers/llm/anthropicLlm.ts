/**
 * LlmClient over the Anthropic Messages API (streamed). `baseURL` must NOT include `/v1`: the adapter
 * appends `/v1/messages` itself.
 *
 * It speaks HTTP itself (src/providers/http/) rather than through `@anthropic-ai/sdk`: a completion
 * is one POST whose server-sent events are parsed as they arrive, which costs a fraction of the SDK's
 * per-request CPU. One client (one keep-alive connection pool) serves every request. The headers are
 * the ones SDK 1.x sends: the key as `authorization: Bearer`, and `anthropic-version`.
 *
 * JSON mode: Anthropic has no schema-free JSON switch, so `json: true` appends an instruction to the
 * system prompt. We do not prefill "{" as an assistant turn: newer Claude models reject prefill, and
 * it would make the streamed text differ from the model's own output.
 */
import {
  createHttpClient,
  drainBody,
  isSuccessStatus,
  providerMessage,
  type HttpResponse,
} from '../http/httpClient.ts';
import { SseLimitError, readSseEvents, type SseEvent } from '../http/sse.ts';
import type { LlmClient, LlmPartial, LlmRequest, LlmResult, LlmUsage } from './llmClient.ts';
import { LlmError, endedEarlyError, llmHttpError } from './llmErrors.ts';
import { startDeadline, type RequestDeadline } from '../requestDeadline.ts';

export interface AnthropicLlmOptions {
  readonly apiKey: string;
  /** No `/v1`. Default https://api.anthropic.com (the app passes ANTHROPIC_BASE_URL here). */
  readonly baseURL?: string;
}

/** Anthropic's own API: the base URL when none is configured. */
export const ANTHROPIC_API_BASE_URL = 'https://api.anthropic.com';

/** The API version requested (the one `@anthropic-ai/sdk` 1.x sends). */
export const ANTHROPIC_VERSION = '2026-10-21';

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

/** The fields of a stream event this adapter reads (each event's data is one of these objects). */
interface StreamEvent {
  readonly type?: string;
  /** message_start */
  readonly message?: { readonly usage?: { readonly input_tokens?: number } | null } | null;
  /** content_block_delta */
  readonly delta?: { readonly type?: string; readonly text?: string } | null;
  /** message_delta: cumulative, so the last one is the total. */
  readonly usage?: { readonly output_tokens?: number } | null;
}

/** Creates an Anthropic client. One connection pool serves every request, so connections are reused. */
export function createAnthropicLlm(options: AnthropicLlmOptions): LlmClient {
  // No retries: a phone turn cannot wait for backoff; callers decide (e.g. another provider).
  const http = createHttpClient({
    apiKey: options.apiKey,
    baseURL: options.baseURL ?? ANTHROPIC_API_BASE_URL,
    headers: { 'anthropic-version': ANTHROPIC_VERSION },
  });

  return {
    provider: 'anthropic',
    async preconnect({ signal, timeoutMs }) {
      // GET /v1/models is free; read to its end, it leaves a kept-alive connection and a TLS session behind.
      const deadline = startDeadline(signal, timeoutMs);
      try {
        const response = await http.request({
          method: 'GET',
          path: '/v1/models?limit=1',
          signal: deadline.signal,
        });
        if (!isSuccessStatus(response.status)) {
          throw llmHttpError(
            'anthropic',
            response.status,
            await http.errorMessage(response),
            NOTHING_STREAMED,
          );
        }
        await drainBody(response.body);
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
      // Set by onEvent (a closure): the assertion keeps TypeScript from narrowing it to null for good.
      let callbackFailure = null as { readonly error: unknown } | null;
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

      const onEvent = (sse: SseEvent): 'stop' | undefined => {
        // Every event of the Messages stream is named; like the SDK, unnamed ones and pings are skipped.
        if (sse.event === null || sse.event === 'ping') return undefined;
        if (sse.event === 'error') {
          // An error event inside a 200 stream, e.g. overloaded_error: the provider gave up mid-answer.
          const { message, type } = streamError(sse.data);
          throw new LlmError(
            'ERR_LLM_HTTP',
            `anthropic reported an error mid-stream: ${http.redact(message)}`,
            {
              provider: 'anthropic',
              partial: partial(),
              retryable: type !== null && RETRYABLE_STREAM_ERRORS.has(type),
            },
          );
        }
        if (sse.data === '') return undefined;
        let event: StreamEvent;
        try {
          event = JSON.parse(sse.data) as StreamEvent;
        } catch (err) {
          throw new LlmError(
            'ERR_LLM_BAD_RESPONSE',
            'anthropic sent a malformed stream: an event is not JSON',
            { provider: 'anthropic', partial: partial(), cause: err },
          );
        }
        switch (event.type) {
          case 'content_block_delta': {
            const delta = event.delta;
            if (delta?.type !== 'text_delta' || typeof delta.text !== 'string' || delta.text === '') break;
            firstTokenMs ??= performance.now() - startedAt;
            text += delta.text;
            try {
              request.onToken?.(delta.text);
            } catch (error) {
              // Rethrown unchanged below; leaving the stream closes it on the wire.
              callbackFailure = { error };
              throw error;
            }
            break;
          }
          case 'message_start': {
            const input = event.message?.usage?.input_tokens;
            if (typeof input === 'number') inputTokens = input;
            break;
          }
          case 'message_delta': {
            const output = event.usage?.output_tokens;
            if (typeof output === 'number') outputTokens = output;
            break;
          }
          case 'message_stop':
            finished = true;
            return 'stop';
        }
        return undefined;
      };

      let response: HttpResponse | null = null;
      try {
        response = await http.request({
          method: 'POST',
          path: '/v1/messages',
          json: {
            model: request.model,
            max_tokens: request.maxOutputTokens,
            messages: request.messages.map((m) => ({ role: m.role, content: m.content })),
            stream: true,
            ...(system === '' ? {} : { system }),
            ...(request.temperature === undefined ? {} : { temperature: request.temperature }),
          },
          accept: 'text/event-stream',
          signal: deadline.signal,
        });
        if (!isSuccessStatus(response.status)) {
          throw llmHttpError('anthropic', response.status, await http.errorMessage(response), partial());
        }
        await readSseEvents(response.body, onEvent);
      } catch (err) {
        if (callbackFailure !== null) throw callbackFailure.error;
        throw translateError(err, deadline, partial(), request.timeoutMs, response !== null);
      } finally {
        deadline.dispose();
      }

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

/**
 * The message and type of an `error` event's data, `{type: "error", error: {type, message}}`; other
 * data gives its text (cut, as error bodies are) as the message, and no type.
 */
function streamError(data: string): { readonly message: string; readonly type: string | null } {
  let type: unknown = null;
  try {
    const body: unknown = JSON.parse(data);
    const error = typeof body === 'object' && body !== null ? (body as { error?: unknown }).error : null;
    if (typeof error === 'object' && error !== null) type = (error as { type?: unknown }).type;
  } catch {
    // Not JSON: the text is the message.
  }
  return { message: providerMessage(data), type: typeof type === 'string' ? type : null };
}

/**
 * Maps whatever a request threw onto an LlmError; the deadline's verdict wins. `answered` tells a
 * failure to connect or send (no response yet) from one while reading the stream.
 */
function translateError(
  err: unknown,
  deadline: RequestDeadline,
  partial: LlmPartial,
  timeoutMs: number,
  answered = false,
): LlmError {
  const provider = 'anthropic';
  if (deadline.endedBy !== null) return endedEarlyError(deadline.endedBy, provider, partial, timeoutMs);
  if (err instanceof LlmError) return err;
  if (err instanceof SseLimitError) {
    return new LlmError('ERR_LLM_BAD_RESPONSE', `anthropic sent a malformed stream: ${err.message}`, {
      provider,
      partial,
      cause: err,
    });
  }
  const reason = err instanceof Error ? err.message : String(err);
  // Connection refused or reset, DNS, TLS; or, once answering, the socket dropped mid-stream.
  return new LlmError(
    'ERR_LLM_CONNECTION',
    answered ? `anthropic stream failed: ${reason}` : `anthropic connection failed: ${reason}`,
    { provider, partial, retryable: true, cause: err },
  );
}
