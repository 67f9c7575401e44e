// The propagation-only request context stands in for an OpenTelemetry context: the API's own
// readers must find its span, and setting a value must keep it.
import { createContextKey, trace } from '@opentelemetry/api';
import { describe, expect, it } from 'vitest';
import { PropagatedContext } from './tracing.js';

const sc = { traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', traceFlags: 1 };

describe('PropagatedContext', () => {
  it('is read by the OpenTelemetry API as a context holding the request span', () => {
    const ctx = new PropagatedContext(sc);
    expect(trace.getSpanContext(ctx)).toEqual(sc);
    expect(trace.getSpan(ctx)?.isRecording()).toBe(false);
  });

  it('keeps the span when another value is set, and loses it only when the span is deleted', () => {
    const ctx = new PropagatedContext(sc);
    const key = createContextKey('test key');
    const withValue = ctx.setValue(key, 42);
    expect(withValue.getValue(key)).toBe(42);
    expect(trace.getSpanContext(withValue)).toEqual(sc);
    expect(ctx.getValue(key)).toBeUndefined();
    expect(ctx.deleteValue(key)).toBe(ctx);
    expect(trace.getSpan(trace.deleteSpan(ctx))).toBeUndefined();
  });
});
