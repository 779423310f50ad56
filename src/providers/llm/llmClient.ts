/**
 * The one interface every LLM vendor adapter implements. Vendor types stop at the adapter; callers
 * see plain text, usage and AppErrors.
 */

export interface ChatMessage {
  readonly role: 'user' | 'assistant';
  readonly content: string;
}

export interface LlmRequest {
  readonly model: string;
  readonly system: string;
  readonly messages: readonly ChatMessage[];
  readonly maxOutputTokens: number;
  /** Ask for a single JSON object as the answer. */
  readonly json?: boolean;
  readonly temperature?: number;
  /** Aborting closes the HTTP stream on the wire. */
  readonly signal?: AbortSignal;
  /** The whole request, first byte to last token; on expiry the stream is closed. */
  readonly timeoutMs: number;
  /** Called with each text delta as it arrives. */
  readonly onToken?: (delta: string) => void;
}

export interface LlmUsage {
  readonly inputTokens: number;
  readonly outputTokens: number;
}

export interface LlmResult {
  readonly text: string;
  readonly provider: 'openai' | 'anthropic';
  readonly model: string;
  /** Null when the provider did not report usage (then cost is estimated). */
  readonly usage: LlmUsage | null;
  readonly firstTokenMs: number | null;
  readonly durationMs: number;
}

/**
 * What an adapter knows when a request ends early (abort, timeout, error): used to estimate what
 * may have been billed. Attached to the thrown AppError as `partial`.
 */
export interface LlmPartial {
  readonly text: string;
  readonly usage: LlmUsage | null;
  readonly firstTokenMs: number | null;
  readonly durationMs: number;
}

export interface LlmClient {
  readonly provider: 'openai' | 'anthropic';
  /** Streams under the hood; resolves with the whole answer. Errors are AppErrors (see llmErrors). */
  complete(request: LlmRequest): Promise<LlmResult>;
  /**
   * Opens a connection to the provider without spending tokens (it lists models), so the first
   * paid request finds the connection, TLS session and client code ready. Errors are LlmErrors.
   */
  preconnect?(options: { readonly signal?: AbortSignal; readonly timeoutMs: number }): Promise<void>;
}
