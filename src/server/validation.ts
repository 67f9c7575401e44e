// Turns a zod validation failure on a client body into one GatewayError with a stable code and the
// offending parameter's path, so clients see exactly what to fix.
import type { z } from 'zod';
import { GatewayError, type ErrorCode } from './errors.js';

export function validationError(error: z.ZodError, body: unknown): GatewayError {
  const first = error.issues[0];
  if (!first) return new GatewayError('invalid_request');
  const issue = closestIssue(first);
  let path = issue.path.map(String);
  let code: ErrorCode = 'invalid_request';
  let message = issue.message;
  switch (issue.code) {
    case 'unrecognized_keys': {
      const key = issue.keys[0] ?? '';
      path = [...path, key];
      code = 'unknown_parameter';
      message = `Unrecognized request argument supplied: ${path.join('.')}`;
      break;
    }
    case 'invalid_type':
      if (valueAt(body, issue.path) === undefined) {
        code = 'missing_required_parameter';
        message = `Missing required parameter: '${path.join('.')}'.`;
      } else {
        code = 'invalid_type';
        message = `Invalid type for '${path.join('.')}': ${issue.message.replace(/^Invalid input: /, '')}.`;
      }
      break;
    case 'too_small':
    case 'too_big':
    case 'invalid_value':
    case 'invalid_format':
    case 'not_multiple_of':
      code = 'invalid_value';
      message = `Invalid value for '${path.join('.')}': ${issue.message}.`;
      break;
    case 'invalid_union':
      // No branch at all (an unknown discriminator such as a content block `type`) is a bad value;
      // several failed branches mean the shape itself is wrong.
      code = issue.errors.length === 0 ? 'invalid_value' : 'invalid_type';
      message = `Invalid value for '${path.join('.')}': it matches none of the accepted forms.`;
      break;
    default:
      message = `Invalid '${path.join('.')}': ${issue.message}.`;
  }
  if (path.length === 1 && path[0] === 'messages' && issue.code === 'too_small') code = 'empty_messages';
  return new GatewayError(code, { message, param: path.join('.') || null });
}

/**
 * For a union, the issue of the branch that got furthest: one whose own problem is not a type
 * mismatch at the union's path (`stop: [5 strings]` matched the array branch and broke its max).
 */
function closestIssue(issue: z.core.$ZodIssue): z.core.$ZodIssue {
  if (issue.code !== 'invalid_union') return issue;
  for (const branch of issue.errors) {
    const inner = branch[0];
    if (inner && !(inner.code === 'invalid_type' && inner.path.length === 0)) {
      return closestIssue({ ...inner, path: [...issue.path, ...inner.path] } as z.core.$ZodIssue);
    }
  }
  return issue;
}

function valueAt(body: unknown, path: readonly PropertyKey[]): unknown {
  let node: unknown = body;
  for (const key of path) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<PropertyKey, unknown>)[key];
  }
  return node;
}
