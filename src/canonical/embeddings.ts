// Canonical embeddings request and response: the OpenAI /v1/embeddings shapes.

export interface EmbeddingRequest {
  model: string;
  input: string | string[] | number[] | number[][];
  encoding_format?: 'float' | 'base64';
  dimensions?: number;
  user?: string;
}

export interface EmbeddingResult {
  object: 'list';
  data: { object: 'embedding'; index: number; embedding: number[] | string }[];
  model: string;
  usage: { prompt_tokens: number; total_tokens: number };
}

/** Inputs as strings; token-array inputs are not supported by every upstream, so callers check first. */
export function embeddingInputs(input: EmbeddingRequest['input']): string[] | null {
  if (typeof input === 'string') return [input];
  if (input.length === 0) return [];
  if (input.every((v): v is string => typeof v === 'string')) return input as string[];
  return null;
}
