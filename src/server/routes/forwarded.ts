// OpenAI API routes the gateway forwards as they came to the model's OpenAI-compatible deployments:
// moderations, image generation, edits and variations, speech, transcriptions and translations. The
// request's `model` names a group (or a passthrough name) as on chat; the body goes on with it
// replaced by the deployment's upstream name (in JSON, or spliced into the multipart form with the
// files byte for byte), and the upstream's status, content type and body come back as they arrive:
// JSON, text, subtitles, audio bytes or an event stream. Nothing is made canonical, cached or
// translated to another provider's API (docs/decisions.md).
import { Readable } from 'node:stream';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest, RouteShorthandOptions } from 'fastify';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { RequestContext } from '../../gateway/context.js';
import type { ForwardCall, Gateway } from '../../gateway/gateway.js';
import { first } from '../../providers/errors.js';
import type { ForwardResponse } from '../../providers/types.js';
import { GatewayError } from '../errors.js';
import { factHeaders } from '../headers.js';
import { MultipartError, MultipartForm } from '../multipart-form.js';
import { createRequestContext } from '../request-context.js';
import { recordBrokenAnswer } from '../respond.js';
import { validationError } from '../validation.js';
import { describeRoute } from './docs.js';

export interface ForwardedRouteOptions {
  gateway: Gateway;
  log: Logger;
}

/** A model name as the client sends it; null is "unset", as OpenAI reads it. */
const modelField = z.string().min(1).nullish();

const moderationSchema = z.looseObject({
  model: modelField,
  input: z.union([z.string(), z.array(z.string()), z.array(z.looseObject({ type: z.string(), text: z.string().optional() }))]),
});

const imageGenerationSchema = z.looseObject({ prompt: z.string(), model: modelField, user: z.string().optional() });

const speechSchema = z.looseObject({
  model: z.string().min(1),
  input: z.string(),
  voice: z.union([z.string(), z.looseObject({ id: z.string() })]),
  stream_format: z.enum(['sse', 'audio']).optional(),
});

/** OpenAI's defaults where `model` is optional. */
const DEFAULT_MODERATION_MODEL = 'omni-moderation-latest';
const DEFAULT_IMAGE_MODEL = 'dall-e-2';

/** A moderation's text input (its image parts are not counted). */
function moderationText(input: z.infer<typeof moderationSchema>['input']): string {
  if (typeof input === 'string') return input;
  return input.map((p) => (typeof p === 'string' ? p : p.type === 'text' ? (p.text ?? '') : '')).join('\n');
}

/** The upstream's status, content type and body as it arrives, with the gateway's fact headers. */
function sendForwarded(reply: FastifyReply, ctx: RequestContext, res: ForwardResponse): FastifyReply {
  reply.code(res.status);
  reply.header('content-type', first(res.headers['content-type']) ?? 'application/octet-stream');
  reply.headers(factHeaders(ctx.facts));
  // A client that goes away destroys this stream, which gives the upstream's body up (and its
  // signal, ctx.signal, cancels the upstream call).
  return reply.send(Readable.from(upstreamBody(reply, ctx, res.body), { objectMode: false }));
}

/**
 * The upstream's body as it comes. One that breaks off after the status went out (its server or the
 * connection failed) ends the client's answer unfinished; the log line, metrics and ledger row then
 * record the upstream's failure (502 `upstream_error`, …), not a client that left (499).
 */
async function* upstreamBody(reply: FastifyReply, ctx: RequestContext, body: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  try {
    yield* body;
  } catch (err) {
    if (!ctx.signal.aborted) recordBrokenAnswer(reply, ctx, err, 'forwarded answer broke off after it started');
    throw err;
  }
}

function multipartDoc(summary: string, description: string, fields: Record<string, string>, required: string[]): RouteShorthandOptions {
  const d = describeRoute({ summary, description, tags: ['openai'] });
  const properties = Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, { type: 'string', description: v }]));
  return { ...d, schema: { ...d.schema, consumes: ['multipart/form-data'], body: { type: 'object', properties, required } } };
}

export const forwardedRoutes: FastifyPluginAsync<ForwardedRouteOptions> = async (app, { gateway, log }) => {
  // Audio and image uploads: kept whole (up to the server's body limit) for their model to be
  // replaced. This plugin's own parser: /v1/files has its own, with its own limit.
  app.addContentTypeParser('multipart/form-data', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));

  /** Forwards `call` for the request and sends the answer; `endpoint` names it in limits, the ledger and logs. */
  async function forward(request: FastifyRequest, reply: FastifyReply, endpoint: string, call: Omit<ForwardCall, 'accept'>): Promise<FastifyReply> {
    const ctx = createRequestContext(request, reply, endpoint, log);
    request.ctx = ctx;
    request.ledgerModel = call.model;
    const accept = first(request.headers.accept);
    const res = await gateway.forward(ctx, { ...call, ...(accept ? { accept } : {}) });
    return sendForwarded(reply, ctx, res);
  }

  /**
   * A JSON route: the body validated by `schema` (also its documented body), `call` giving its model
   * (defaulted where OpenAI defaults it) and what else the call carries; the model replaced per deployment.
   */
  const jsonRoute = <S extends z.ZodType<Record<string, unknown>>>(
    url: string,
    endpoint: string,
    path: string,
    schema: S,
    doc: { summary: string; description: string },
    call: (body: z.infer<S>) => Pick<ForwardCall, 'model' | 'promptText' | 'user'>,
  ) =>
    app.post(url, describeRoute({ ...doc, tags: ['openai'], body: schema }), async (request, reply) => {
      const parsed = schema.safeParse(request.body);
      if (!parsed.success) throw validationError(parsed.error, request.body);
      const body = parsed.data;
      return forward(request, reply, endpoint, { ...call(body), path, body: (model: string) => ({ contentType: 'application/json', body: JSON.stringify({ ...body, model }) }) });
    });

  jsonRoute(
    '/v1/moderations',
    'moderations',
    '/moderations',
    moderationSchema,
    { summary: 'Classify text and images (moderations)', description: `Forwarded to the model's OpenAI-compatible deployments; \`model\` defaults to \`${DEFAULT_MODERATION_MODEL}\`.` },
    (b) => ({ model: b.model ?? DEFAULT_MODERATION_MODEL, promptText: moderationText(b.input) }),
  );
  jsonRoute(
    '/v1/images/generations',
    'images',
    '/images/generations',
    imageGenerationSchema,
    { summary: 'Create images', description: `Forwarded to the model's OpenAI-compatible deployments; \`model\` defaults to \`${DEFAULT_IMAGE_MODEL}\`. The answer (JSON, or the image event stream with \`stream: true\`) comes back as the upstream sends it.` },
    (b) => ({ model: b.model ?? DEFAULT_IMAGE_MODEL, ...(b.user ? { user: b.user } : {}) }),
  );
  jsonRoute(
    '/v1/audio/speech',
    'audio',
    '/audio/speech',
    speechSchema,
    { summary: 'Generate speech', description: "Forwarded to the model's OpenAI-compatible deployments; the audio (or the event stream with `stream_format: \"sse\"`) streams back as it arrives, with the upstream's content type." },
    (b) => ({ model: b.model }),
  );

  /** A multipart route: the form read, its model found (or defaulted), and replaced per deployment. */
  const multipartRoute = (url: string, endpoint: string, path: string, defaultModel: string | undefined, doc: RouteShorthandOptions) =>
    app.post(url, doc, async (request, reply) => {
      const contentType = request.headers['content-type'];
      let form: MultipartForm | undefined;
      try {
        form = Buffer.isBuffer(request.body) ? MultipartForm.parse(request.body, contentType) : undefined;
      } catch (err) {
        throw new GatewayError('invalid_request', { message: `The multipart body could not be read: ${(err as MultipartError).message}.` });
      }
      if (!form || !contentType) throw new GatewayError('unsupported_media_type', { message: `Send ${url} as multipart/form-data, as OpenAI's API takes it.` });
      const model = form.field('model')?.trim() || defaultModel;
      if (!model) throw new GatewayError('missing_required_parameter', { param: 'model', message: "Missing required parameter: 'model'." });
      const user = form.field('user');
      const body = (upstream: string) => {
        try {
          return { contentType, body: form.withField('model', upstream) };
        } catch (err) {
          throw new GatewayError('invalid_request', { param: 'model', message: `The form could not be re-encoded: ${(err as MultipartError).message}.` });
        }
      };
      return forward(request, reply, endpoint, { model, path, body, ...(user ? { user } : {}) });
    });

  const audioFields = { file: 'the audio file', model: 'a model group or passthrough name', response_format: '`json`, `text`, `srt`, `verbose_json` or `vtt`: passed through with the upstream content type' };
  multipartRoute(
    '/v1/audio/transcriptions',
    'audio',
    '/audio/transcriptions',
    undefined,
    multipartDoc('Transcribe audio', "Multipart form forwarded to the model's OpenAI-compatible deployments with `model` replaced and the file byte for byte; the answer (JSON, text, subtitles, or the event stream with `stream=true`) as the upstream sends it.", { ...audioFields, stream: 'true for an event stream' }, ['file', 'model']),
  );
  multipartRoute(
    '/v1/audio/translations',
    'audio',
    '/audio/translations',
    undefined,
    multipartDoc('Translate audio into English', "Multipart form forwarded to the model's OpenAI-compatible deployments with `model` replaced and the file byte for byte.", audioFields, ['file', 'model']),
  );
  multipartRoute(
    '/v1/images/edits',
    'images',
    '/images/edits',
    DEFAULT_IMAGE_MODEL,
    multipartDoc('Edit an image', `Multipart form forwarded to the model's OpenAI-compatible deployments (\`model\` defaults to \`${DEFAULT_IMAGE_MODEL}\`), the images byte for byte.`, { image: 'the image (or `image[]`, several)', prompt: 'what to do', model: 'a model group or passthrough name', mask: 'an optional mask' }, ['image', 'prompt']),
  );
  multipartRoute(
    '/v1/images/variations',
    'images',
    '/images/variations',
    DEFAULT_IMAGE_MODEL,
    multipartDoc('Create image variations', `Multipart form forwarded to the model's OpenAI-compatible deployments (\`model\` defaults to \`${DEFAULT_IMAGE_MODEL}\`), the image byte for byte.`, { image: 'the image', model: 'a model group or passthrough name' }, ['image']),
  );
};
