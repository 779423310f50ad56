/**
 * LlmClient over OpenAI Chat Completions (streamed). Works with any OpenAI-compatible server through
 * `baseURL` (which must include `/v1`).
 *
 * It speaks HTTP itself (src/providers/http/) rather than through the `openai` SDK: a completion is
 * one POST whose server-sent events are parsed as they arrive, which costs a fraction of the SDK's
 * per-request CPU. One client (one keep-alive connection pool) serves every request.
 */
import { OPENAI_API_BASE_URL, createHttpClient } from '../http/httpClient.ts';
import type { LlmClient, LlmRequest, LlmResult } from './llmClient.ts';
import { LlmError } from './llmErrors.ts';
import { listModels, streamCompletion } from './streamedCompletion.ts';

export interface OpenAiLlmOptions {
  readonly apiKey: string;
  /** Must include `/v1`. Default https://api.openai.com/v1 (the app passes OPENAI_BASE_URL here). */
  readonly baseURL?: string;
}

// OpenAI rejects JSON mode unless the messages mention "json"; callers' prompts usually do.
const JSON_INSTRUCTION = 'Answer with a single JSON object.';

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
    preconnect: (options) => listModels('openai', http, '/models', options),
    complete(request: LlmRequest): Promise<LlmResult> {
      return streamCompletion({
        provider: 'openai',
        http,
        request,
        path: '/chat/completions',
        body: {
          model: request.model,
          messages: toMessages(request),
          max_completion_tokens: request.maxOutputTokens,
          stream: true,
          stream_options: { include_usage: true },
          ...(request.json === true ? { response_format: { type: 'json_object' } } : {}),
          ...(request.temperature === undefined ? {} : { temperature: request.temperature }),
        },
        endMarker: 'a finish_reason',
        onEvent: (event, stream) => {
          if (event.data === '[DONE]') return 'stop';
          const chunk = stream.json<ChatChunk>(event.data);
          if (event.event === 'error' || (chunk.error !== undefined && chunk.error !== null)) {
            // An error object inside a 200 stream: the provider gave up mid-answer.
            throw new LlmError(
              'ERR_LLM_HTTP',
              `openai reported an error mid-stream: ${http.redact(streamErrorMessage(chunk))}`,
              { provider: 'openai', partial: stream.partial(), retryable: true },
            );
          }
          if (chunk.usage) {
            stream.usage = {
              inputTokens: chunk.usage.prompt_tokens,
              outputTokens: chunk.usage.completion_tokens,
            };
          }
          const choice = chunk.choices?.[0];
          const delta = choice?.delta?.content;
          if (delta) stream.token(delta);
          if (choice?.finish_reason) stream.finish();
          return undefined;
        },
      });
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
