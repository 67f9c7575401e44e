import { describe, expect, it } from 'vitest';
import { specForTests } from '../../providers/__fixtures__/openai-spec.js';
import { renderBatch } from './routes.js';
import type { BatchRow, BatchStatus } from './store.js';

const spec = specForTests('batch routes.test');

function row(status: BatchStatus, at: Partial<BatchRow> = {}): BatchRow {
  return {
    id: 'batch_1', tenant_id: 't', tenant: { id: 't', kind: 'token' } as BatchRow['tenant'], endpoint: '/v1/chat/completions', input_file_id: 'file_1',
    completion_window: '24h', status, metadata: null, errors: null, output_file_id: null, error_file_id: null, total: 3,
    created_at: 1_700_000_000, in_progress_at: 1_700_000_001, expires_at: 1_700_086_400, finalizing_at: null, completed_at: null, failed_at: null,
    cancelling_at: null, cancelled_at: null, notified_at: null, expiring_at: null, expired_at: null, ...at,
  };
}

describe('the batch object', () => {
  const statuses: BatchStatus[] = ['validating', 'failed', 'in_progress', 'finalizing', 'completed', 'expiring', 'expired', 'cancelling', 'cancelled'];

  it.each(statuses)('is a valid OpenAI Batch with status %s', (status) => {
    const b = renderBatch(row(status, status === 'expiring' ? { expiring_at: 1_700_086_401.5 } : {}), { total: 3, completed: 1, failed: 0 });
    // The spec types the optional fields without null, while OpenAI's own example of the object (and
    // its API) sends null for those not set yet: they are checked as absent.
    const set = Object.fromEntries(Object.entries(b).filter(([, v]) => v !== null));
    if (spec) expect(spec.errors('Batch', set)).toEqual([]);
  });

  it('shows a job whose window ended while lines finish as finalizing, since when the window closed', () => {
    // `expiring` is not among OpenAI's statuses: a client with a closed enum would refuse the object.
    const b = renderBatch(row('expiring', { expiring_at: 1_700_086_401.5 }), { total: 3, completed: 1, failed: 0 });
    expect(b.status).toBe('finalizing');
    expect(b.finalizing_at).toBe(1_700_086_401);
    expect(b.expired_at).toBeNull();
  });
});
