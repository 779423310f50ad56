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
import { createHttpClient, providerMessage } from '../http/httpClient.ts';
import type { LlmClient, LlmRequest, LlmResult } from './llmClient.ts';
import { LlmError } from './llmErrors.ts';
import { listModels, streamCompletion } from './streamedCompletion.ts';

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
    preconnect: (options) => listModels('anthropic', http, '/v1/models?limit=1', options),
    complete(request: LlmRequest): Promise<LlmResult> {
      const system =
        request.json === true
          ? [request.system, JSON_INSTRUCTION].filter((s) => s !== '').join('\n\n')
          : request.system;
      let inputTokens = 0;
      return streamCompletion({
        provider: 'anthropic',
        http,
        request,
        path: '/v1/messages',
        body: {
          model: request.model,
          max_tokens: request.maxOutputTokens,
          messages: request.messages.map((m) => ({ role: m.role, content: m.content })),
          stream: true,
          ...(system === '' ? {} : { system }),
          ...(request.temperature === undefined ? {} : { temperature: request.temperature }),
        },
        endMarker: 'message_stop',
        onEvent: (sse, stream) => {
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
                partial: stream.partial(),
                retryable: type !== null && RETRYABLE_STREAM_ERRORS.has(type),
              },
            );
          }
          if (sse.data === '') return undefined;
          const event = stream.json<StreamEvent>(sse.data);
          switch (event.type) {
            case 'content_block_delta': {
              const delta = event.delta;
              if (delta?.type === 'text_delta' && typeof delta.text === 'string' && delta.text !== '') {
                stream.token(delta.text);
              }
              break;
            }
            case 'message_start': {
              const input = event.message?.usage?.input_tokens;
              if (typeof input === 'number') inputTokens = input;
              break;
            }
            case 'message_delta': {
              // Output counts are only final once message_delta arrives; until then usage stays
              // unknown, so a cut-short request reports null and its cost is estimated.
              const output = event.usage?.output_tokens;
              if (typeof output === 'number') stream.usage = { inputTokens, outputTokens: output };
              break;
            }
            case 'message_stop':
              stream.finish();
              return 'stop';
          }
          return undefined;
        },
      });
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
