import { describe, expect, it } from 'vitest';
import { fixture } from './__fixtures__/fixture-server.js';
import { upstreamErrorMessage } from './http.js';
import { UpstreamError, kindForStatus } from './errors.js';

/** The kind an HTTP error answer of `status` with this body gets, read as the adapters read it. */
function kindOf(status: number, body: unknown): UpstreamError['kind'] {
  return kindForStatus(status, upstreamErrorMessage(body) ?? '', body);
}

describe('kindForStatus: llama-server refusing a request with HTTP 500', () => {
  it.each([
    ['llamaserver-error-500-n.json'], // n != 1
    ['llamaserver-error-500-jinja.json'], // tools without --jinja
    ['llamaserver-error-500-mmproj.json'], // an image without a multimodal projector
  ])('%s is what this deployment cannot do (unsupported: not retried, not held against its breaker, another deployment may)', async (file) => {
    const body: unknown = JSON.parse(await fixture(file));
    expect(kindOf(500, body)).toBe('unsupported');
    expect(new UpstreamError({ provider: 'llama', kind: kindOf(500, body), message: 'x', status: 500 }).retryable).toBe(false);
  });

  it.each([
    'tool_choice param requires --jinja flag',
    'Unsupported param (--jinja mode required for tool call): tools',
    'Unsupported param: best_of',
    'Only no echo is supported',
    'Illegal param: only one completion choice is allowed',
    'audio input is not supported - hint: if this is unexpected, you may need to provide the mmproj',
    'Multimodal data provided, but model does not support multimodal requests.',
    'logprobs is not supported with tools + stream',
    'Illegal param: "response_format" must be one of "text" or "json_object", but got: json_schema',
  ])('llama-server’s 500 "%s" is unsupported', (message) => {
    expect(kindOf(500, { error: { code: 500, message, type: 'server_error' } })).toBe('unsupported');
  });

  it('and so is the same refusal where a newer build answers it 400 (std::invalid_argument)', () => {
    expect(kindOf(400, { error: { code: 400, message: 'response_format type must be one of "text" or "json_object", but got: xml', type: 'invalid_request_error' } })).toBe('unsupported');
  });

  it.each([
    'Cannot use both json_schema and grammar',
    'Cannot use custom grammar constraints with tools.',
    'top_logprobs requires logprobs to be set to true',
    '"prompt" is required',
    'Invalid url format: data:text/plain;base64',
    'Failed to load image or audio file',
    "Failed to parse messages: Missing 'role' in message: {}",
    'Invalid tool_choice: sometimes',
    "Expected 'content' to be a string or an array",
    'unsupported content[].type',
    'Cannot have 2 or more assistant messages at the end of the list.',
  ])('llama-server’s 500 "%s" is a malformed request (bad_request: not retried, not held against the breaker)', (message) => {
    expect(kindOf(500, { error: { code: 500, message, type: 'server_error' } })).toBe('bad_request');
    expect(new UpstreamError({ provider: 'llama', kind: 'bad_request', message, status: 500 }).retryable).toBe(false);
  });

  it('keeps every other 5xx a retryable server failure, and the same words on a 502 too', () => {
    expect(kindOf(500, { error: { code: 500, message: 'Failed to decode the batch', type: 'server_error' } })).toBe('server');
    expect(kindOf(500, { error: { message: 'The server had an error while processing your request.', type: 'server_error' } })).toBe('server');
    expect(kindOf(500, 'Internal Server Error')).toBe('server');
    expect(kindOf(502, { error: { message: 'Only one completion choice is allowed' } })).toBe('server');
  });

  it('makes a 501 (llama-server without --embeddings) an unsupported capability, not a server failure', async () => {
    const body: unknown = JSON.parse(await fixture('llamaserver-error-501-embeddings.json'));
    expect(kindOf(501, body)).toBe('unsupported');
    expect(new UpstreamError({ provider: 'llama', kind: 'unsupported', message: 'x', status: 501 }).retryable).toBe(false);
  });
});

describe('kindForStatus: context overflows', () => {
  it('reads llama-server’s exceed_context_size_error by its type, whatever the message says', async () => {
    const body: unknown = JSON.parse(await fixture('llamaserver-error-400-context.json'));
    expect(kindOf(400, body)).toBe('context_length');
    expect(kindOf(400, { error: { code: 400, message: 'reworded in a later build', type: 'exceed_context_size_error' } })).toBe('context_length');
  });

  it('reads OpenAI’s context_length_exceeded code, whatever the message says', () => {
    expect(kindOf(400, { error: { message: 'too big', type: 'invalid_request_error', code: 'context_length_exceeded' } })).toBe('context_length');
  });

  it.each([
    ['vLLM (decoder prompt)', 400, 'The decoder prompt (length 8825) is longer than the maximum model length of 8192.'],
    ['vLLM (decoder prompt plus output)', 400, 'The decoder prompt (length 2048) plus the number of requested output tokens (at least 1) is longer than the maximum model length of 2048.'],
    ['vLLM (max_tokens)', 400, "'max_tokens' or 'max_completion_tokens' is too large: 8000. This model's maximum context length is 4096 tokens and your request has 2778 input tokens (8000 > 4096 - 2778)."],
    ['llama-server (older)', 400, 'the request exceeds the available context size, try increasing it'],
    ['LM Studio', 400, 'Trying to keep the first 6269 tokens when context the overflows. However, the model is loaded with context length of only 4096 tokens, which is not enough. Try to load the model with a larger context length, or provide a shorter input'],
    ['Ollama (embed, truncate: false)', 400, 'the input length exceeds the context length'],
    ['Ollama (embed, older builds answer 500)', 500, 'the input length exceeds the context length'],
    ['TGI (inputs + max_new_tokens)', 422, 'Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: 4000 `inputs` tokens and 200 `max_new_tokens`'],
    ['TGI (inputs)', 422, 'Input validation error: `inputs` must have less than 4096 tokens. Given: 5000'],
    ['Anthropic (input plus max_tokens)', 400, 'input length and `max_tokens` exceed context limit: 178959 + 64000 > 200000, decrease input length or `max_tokens` and try again'],
  ])('%s', (_server, status, message) => {
    expect(kindOf(status, { error: { message } })).toBe('context_length');
  });

  it('reads vLLM’s flat error body (message at the top level)', async () => {
    expect(kindOf(400, JSON.parse(await fixture('vllm-error-400-context.json')))).toBe('context_length');
  });

  it('leaves other 400s as bad_request', () => {
    expect(kindOf(400, { error: { message: "Invalid value for 'temperature'", type: 'invalid_request_error' } })).toBe('bad_request');
    expect(kindOf(400, { error: { message: "Unsupported parameter: 'max_tokens' is not supported with this model.", type: 'invalid_request_error' } })).toBe('bad_request');
  });
});

describe('kindForStatus: an account or a model that cannot serve is the deployment’s fault, not the request’s', () => {
  it.each([
    ['Anthropic, out of credit (400)', 400, { type: 'error', error: { type: 'invalid_request_error', message: 'Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.' } }, 'quota'],
    ['Anthropic, billing_error (402)', 402, { type: 'error', error: { type: 'billing_error', message: 'Billing issue with your account.' } }, 'quota'],
    ['Cohere, billing limit (402)', 402, { message: 'Please add a payment method to continue.' }, 'quota'],
    ['Ollama, a model without tools', 400, { error: 'registry.ollama.ai/library/gemma3:4b does not support tools' }, 'unsupported'],
    ['Ollama, a model without embeddings', 400, { error: '"llama3.2" does not support embeddings' }, 'unsupported'],
  ])('%s', (_case, status, body, kind) => {
    expect(kindOf(status, body)).toBe(kind);
  });
});
