// Inline images arrive as data: URLs in the canonical (OpenAI) content parts; Gemini, Ollama and
// others want the media type and the base64 payload apart. This splits one without copying the data.

export interface InlineData {
  mimeType: string;
  /** Base64 payload, as it was in the URL. */
  data: string;
}

const DATA_URL = /^data:([^;,]+)?((?:;[^;,]+)*?);base64,/i;

/** The parts of a base64 data: URL, or null for anything else (http URLs, non-base64 data URLs). */
export function parseDataUrl(url: string): InlineData | null {
  const m = DATA_URL.exec(url);
  if (!m) return null;
  return { mimeType: (m[1] ?? 'application/octet-stream').toLowerCase(), data: url.slice(m[0].length) };
}

/**
 * The document of a canonical `file` part. Every ingress (the chat schema, the Anthropic and Responses
 * adapters) admits only base64 data URLs there, so anything else is a bug upstream of the adapter.
 */
export function documentData(fileData: string): InlineData {
  const inline = parseDataUrl(fileData);
  if (!inline) throw new Error('a file part without a base64 data: URL reached a provider adapter');
  return inline;
}
