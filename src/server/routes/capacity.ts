// Capacity routes: `GET /v1/cluster` (seed 000's cluster status: GPU pool load, leases, allocation
// figures) and `GET /v1/scaling` (the autoscaler's forecast, last decision and its reasons).
// The services are built by src/capacity/service.ts and handed in; routes only render them.
import type { FastifyPluginAsync } from 'fastify';
import type { GpuAllocator } from '../../capacity/allocator.js';
import type { Autoscaler } from '../../capacity/scaler-service.js';

export interface CapacityRouteOptions {
  /** Absent when no GPU pool is configured: the route then says so rather than 404. */
  allocator?: Pick<GpuAllocator, 'clusterStatus'>;
  autoscaler?: Pick<Autoscaler, 'report'>;
}

export const capacityRoutes: FastifyPluginAsync<CapacityRouteOptions> = async (app, opts) => {
  app.get('/v1/cluster', async () => {
    if (!opts.allocator) return { status: 'not_configured', message: 'No GPU pool is configured (clusters.pools, clusters.hosted or clusters.from_mesh).' };
    return opts.allocator.clusterStatus();
  });

  app.get('/v1/scaling', async () => {
    if (!opts.autoscaler) return { enabled: false, message: 'The autoscaler is off (scaling.enabled).' };
    return opts.autoscaler.report();
  });
};
