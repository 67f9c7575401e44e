// Documents (PDFs) through the gateway with the official clients: an OpenAI `file` content part, an
// Anthropic `document` block and a Responses `input_file` all reach a deployment that reads
// documents; a group whose deployments cannot is refused with 400, and files by id with 400.
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { startTestGateway } from './helpers/gateway.js';

let server: RunningServer;
let openai: OpenAI;
let anthropic: Anthropic;
const pdf = Buffer.from('%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF').toString('base64');

beforeAll(async () => {
  server = await startTestGateway({
    config: {
      providers: {
        sim: { type: 'simulator' },
        // Never reached: it does not read documents.
        cohere: { type: 'cohere', base_url: 'http://127.0.0.1:9', api_key: 'unused' },
        // Never reached by a CSV: Anthropic reads PDFs and plain text only.
        claude: { type: 'anthropic', base_url: 'http://127.0.0.1:9', api_key: 'unused' },
      },
      models: [
        { name: 'reader', deployments: [{ provider: 'cohere', model: 'command-r', priority: 0 }, { provider: 'sim', model: 'sim-model', priority: 1 }] },
        { name: 'text-only', deployments: [{ provider: 'cohere', model: 'command-r' }] },
        { name: 'csv', deployments: [{ provider: 'claude', model: 'claude-x', priority: 0 }, { provider: 'sim', model: 'sim-model', priority: 1 }] },
      ],
    },
  });
  openai = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  anthropic = new Anthropic({ baseURL: server.url, apiKey: 'unused', maxRetries: 0 });
});
afterAll(async () => {
  await server?.close();
});

describe('documents through the gateway', () => {
  it('an OpenAI file part goes to a deployment that reads documents', async () => {
    const { data, response } = await openai.chat.completions
      .create({ model: 'reader', messages: [{ role: 'user', content: [{ type: 'file', file: { file_data: `data:application/pdf;base64,${pdf}`, filename: 'r.pdf' } }, { type: 'text', text: 'Summarise the report' }] }] })
      .withResponse();
    expect(response.headers.get('x-inferenceflow-provider')).toBe('sim');
    expect(data.choices[0]?.message.content).toContain('Summarise the report');
  });

  it('an Anthropic document block too (and a text document reaches every model as text)', async () => {
    const msg = await anthropic.messages.create({
      model: 'reader',
      max_tokens: 64,
      messages: [
        {
          role: 'user',
          content: [
            { type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: pdf }, title: 'Q3 report' },
            { type: 'document', source: { type: 'text', media_type: 'text/plain', data: 'Revenue grew.' }, title: 'notes' },
            { type: 'text', text: 'What changed?' },
          ],
        },
      ],
    });
    expect(msg.content[0]?.type).toBe('text');
    // The conversion kept the PDF: a group that reads no documents refuses it (dropped, it would have
    // gone to that group's unreachable upstream). The text document became text: that one goes there.
    const pdfOnly = await anthropic.messages
      .create({ model: 'text-only', max_tokens: 16, messages: [{ role: 'user', content: [{ type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: pdf } }] }] })
      .catch((e: unknown) => e);
    expect(pdfOnly).toBeInstanceOf(Anthropic.BadRequestError);
    expect((pdfOnly as Error).message).toMatch(/documents/);
    const textOnly = await anthropic.messages
      .create({ model: 'text-only', max_tokens: 16, messages: [{ role: 'user', content: [{ type: 'document', source: { type: 'text', media_type: 'text/plain', data: 'Revenue grew.' } }] }] })
      .catch((e: unknown) => e);
    expect((textOnly as InstanceType<typeof Anthropic.APIError>).status).toBeGreaterThanOrEqual(500);
  });

  it('a Responses input_file too', async () => {
    const r = await openai.responses.create({ model: 'reader', input: [{ role: 'user', content: [{ type: 'input_file', file_data: `data:application/pdf;base64,${pdf}`, filename: 'r.pdf' }, { type: 'input_text', text: 'Summarise' }] }] });
    expect(r.status).toBe('completed');
    const refused = await openai.responses
      .create({ model: 'text-only', input: [{ role: 'user', content: [{ type: 'input_file', file_data: `data:application/pdf;base64,${pdf}`, filename: 'r.pdf' }] }] })
      .catch((e: unknown) => e);
    expect((refused as InstanceType<typeof OpenAI.BadRequestError>).code).toBe('unsupported_capability');
  });

  it('goes past a deployment that reads documents but not of this type', async () => {
    const csv = Buffer.from('region,revenue\nnorth,10\n').toString('base64');
    const { response } = await openai.chat.completions
      .create({ model: 'csv', messages: [{ role: 'user', content: [{ type: 'file', file: { file_data: `data:text/csv;base64,${csv}`, filename: 'r.csv' } }, { type: 'text', text: 'Total?' }] }] })
      .withResponse();
    expect(response.headers.get('x-inferenceflow-provider')).toBe('sim');
  });

  it('a Responses input_file in a developer message is refused (documents belong to user turns)', async () => {
    const err = await openai.responses
      .create({ model: 'reader', input: [{ role: 'developer', content: [{ type: 'input_file', file_data: `data:application/pdf;base64,${pdf}`, filename: 'a.pdf' }] }, { role: 'user', content: 'Summarise' }] })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect((err as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('input.0.content');
  });

  it('is refused with 400 when no deployment reads documents, and by file id', async () => {
    const none = await openai.chat.completions
      .create({ model: 'text-only', messages: [{ role: 'user', content: [{ type: 'file', file: { file_data: `data:application/pdf;base64,${pdf}` } }] }] })
      .catch((e: unknown) => e);
    expect(none).toBeInstanceOf(OpenAI.BadRequestError);
    expect((none as InstanceType<typeof OpenAI.BadRequestError>).code).toBe('unsupported_capability');
    expect((none as Error).message).toMatch(/documents/);
    // A document by file id is refused, naming the parameter.
    const byId = await openai.chat.completions.create({ model: 'reader', messages: [{ role: 'user', content: [{ type: 'file', file: { file_id: 'file-abc' } }] }] }).catch((e: unknown) => e);
    expect(byId).toBeInstanceOf(OpenAI.BadRequestError);
    expect((byId as InstanceType<typeof OpenAI.BadRequestError>).param).toMatch(/^messages\.0\.content\.0\.file/);
  });
});
