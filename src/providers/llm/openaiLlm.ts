/**
 * LlmClient over OpenAI Chat Completions (streamed). Works with any OpenAI-compatible server through
 * `baseURL` (which must include `/v1`).
 *
 * It speaks HTTP itself (src/providers/http/) rather than through the `openai` SDK: a completion is
 * one POST whose server-sent events are parsed as they arrive, which costs a fraction of the SDK's
 * per-request CPU. One client (one keep-alive connection pool) serves every request.
 */
import {
  OPENAI_API_BASE_URL,
  createHttpClient,
  drainBody,
  isSuccessStatus,
  type HttpResponse,
} from '../http/httpClient.ts';
import { SseLimitError, readSseEvents, type SseEvent } from '../http/sse.ts';
import type { LlmClient, LlmPartial, LlmRequest, LlmResult, LlmUsage } from './llmClient.ts';
import { LlmError, endedEarlyError, llmHttpError } from './llmErrors.ts';
import { startDeadline, type RequestDeadline } from '../requestDeadline.ts';

export interface OpenAiLlmOptions {
  readonly apiKey: string;
  /** Must include `/v1`. Default https://api.openai.com/v1 (the app passes OPENAI_BASE_URL here). */
  readonly baseURL?: string;
}

// OpenAI rejects JSON mode unless the messages mention "json"; callers' prompts usually do.
const JSON_INSTRUCTION = 'Answer with a single JSON object.';

const NOTHING_STREAMED: LlmPartial = { text: '', usage: null, firstTokenMs: null, durationMs: 0 };

/** The fields of a streamed chunk this adapter reads. */
interface ChatChunk {
  readonly choices?: readonly {
    readonly delta?: { readonly content?: string | null } | null;
    readonly finish_reason?: string | null;
  }[];
  readonly usage?: { readonly prompt_tokens: number; readonly completion_tokens: number } | null;
  readonly error?: unknown;
}

interface ChatMessageParam {
  readonly role: 'system' | 'user' | 'assistant';
  readonly content: string;
}

/** Creates an OpenAI chat client. One connection pool serves every request, so connections are reused. */
export function createOpenAiLlm(options: OpenAiLlmOptions): LlmClient {
  // No retries: a phone turn cannot wait for backoff; callers decide (e.g. another provider).
  const http = createHttpClient({
    apiKey: options.apiKey,
    baseURL: options.baseURL ?? OPENAI_API_BASE_URL,
  });

  return {
    provider: 'openai',
    async preconnect({ signal, timeoutMs }) {
      // GET /models is free; read to its end, it leaves a kept-alive connection and a TLS session behind.
      const deadline = startDeadline(signal, timeoutMs);
      try {
        const response = await http.request({ method: 'GET', path: '/models', signal: deadline.signal });
        if (!isSuccessStatus(response.status)) {
          throw llmHttpError('openai', response.status, await http.errorMessage(response), NOTHING_STREAMED);
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
      let usage: LlmUsage | null = null;
      let firstTokenMs: number | null = null;
      let finished = false;
      // Set by onEvent (a closure): the assertion keeps TypeScript from narrowing it to null for good.
      let callbackFailure = null as { readonly error: unknown } | null;
      const partial = (): LlmPartial => ({
        text,
        usage,
        firstTokenMs,
        durationMs: performance.now() - startedAt,
      });

      const onEvent = (event: SseEvent): 'stop' | undefined => {
        if (event.data === '[DONE]') return 'stop';
        let chunk: ChatChunk;
        try {
          chunk = JSON.parse(event.data) as ChatChunk;
        } catch (err) {
          throw new LlmError('ERR_LLM_BAD_RESPONSE', 'openai sent a malformed stream: an event is not JSON', {
            provider: 'openai',
            partial: partial(),
            cause: err,
          });
        }
        if (event.event === 'error' || (chunk.error !== undefined && chunk.error !== null)) {
          // An error object inside a 200 stream: the provider gave up mid-answer.
          throw new LlmError(
            'ERR_LLM_HTTP',
            `openai reported an error mid-stream: ${http.redact(streamErrorMessage(chunk))}`,
            { provider: 'openai', partial: partial(), retryable: true },
          );
        }
        if (chunk.usage) {
          usage = { inputTokens: chunk.usage.prompt_tokens, outputTokens: chunk.usage.completion_tokens };
        }
        const choice = chunk.choices?.[0];
        const delta = choice?.delta?.content;
        if (delta) {
          firstTokenMs ??= performance.now() - startedAt;
          text += delta;
          try {
            request.onToken?.(delta);
          } catch (error) {
            // Rethrown unchanged below; leaving the stream closes it on the wire.
            callbackFailure = { error };
            throw error;
          }
        }
        if (choice?.finish_reason) finished = true;
        return undefined;
      };

      let response: HttpResponse | null = null;
      try {
        response = await http.request({
          method: 'POST',
          path: '/chat/completions',
          json: {
            model: request.model,
            messages: toMessages(request),
            max_completion_tokens: request.maxOutputTokens,
            stream: true,
            stream_options: { include_usage: true },
            ...(request.json === true ? { response_format: { type: 'json_object' } } : {}),
            ...(request.temperature === undefined ? {} : { temperature: request.temperature }),
          },
          accept: 'text/event-stream',
          signal: deadline.signal,
        });
        if (!isSuccessStatus(response.status)) {
          throw llmHttpError('openai', response.status, await http.errorMessage(response), partial());
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

function toMessages(request: LlmRequest): ChatMessageParam[] {
  let system = request.system;
  if (request.json === true && !/json/i.test([system, ...request.messages.map((m) => m.content)].join(' '))) {
    system = system === '' ? JSON_INSTRUCTION : `${system}\n\n${JSON_INSTRUCTION}`;
  }
  return [
    ...(system === '' ? [] : [{ role: 'system' as const, content: system }]),
    ...request.messages.map((m) => ({ role: m.role, content: m.content })),
  ];
}

/** The message of an error event: `{error: {message}}`, as the SDK read it, or the error as JSON. */
function streamErrorMessage(chunk: ChatChunk): string {
  const error = chunk.error ?? chunk;
  const message =
    typeof error === 'object' && error !== null ? (error as { message?: unknown }).message : error;
  return typeof message === 'string' ? message : JSON.stringify(error);
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
  const provider = 'openai';
  if (deadline.endedBy !== null) return endedEarlyError(deadline.endedBy, provider, partial, timeoutMs);
  if (err instanceof LlmError) return err;
  if (err instanceof SseLimitError) {
    return new LlmError('ERR_LLM_BAD_RESPONSE', `openai sent a malformed stream: ${err.message}`, {
      provider,
      partial,
      cause: err,
    });
  }
  const reason = err instanceof Error ? err.message : String(err);
  // Connection refused or reset, DNS, TLS; or, once answering, the socket dropped mid-stream.
  return new LlmError(
    'ERR_LLM_CONNECTION',
    answered ? `openai stream failed: ${reason}` : `openai connection failed: ${reason}`,
    { provider, partial, retryable: true, cause: err },
  );
}
