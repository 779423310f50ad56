/** Turns texts into vectors. Implementations: the local hashed n-gram embedder and OpenAI embeddings. */
export interface Embedder {
  /** Stable identifier, e.g. "local:hash-ngram-v1" or "openai:text-embedding-3-small". */
  readonly id: string;
  readonly dimensions: number;
  /** One unit-length vector per text, in order. */
  embed(texts: readonly string[], signal?: AbortSignal): Promise<Float32Array[]>;
}
