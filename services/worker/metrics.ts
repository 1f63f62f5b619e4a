import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** The worker's Prometheus metrics, on a registry of its own (served at /metrics). */
export function createWorkerMetrics(options: { defaults?: boolean } = {}) {
  const registry = new Registry();
  if (options.defaults ?? true) collectDefaultMetrics({ register: registry });
  return {
    registry,
    jobs: new Counter({
      name: 'enhancement_jobs_total',
      help: 'Enhancement jobs finished by this worker, by outcome (completed, or the failure reason; handed_back, retry).',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    upstreamLatency: new Histogram({
      name: 'enhancement_upstream_latency_seconds',
      help: 'From the Wavespeed submit to the final status seen by polling.',
      labelNames: ['model', 'status'] as const,
      buckets: [0.5, 1, 2, 3, 5, 8, 13, 21, 34, 60, 120, 300],
      registers: [registry],
    }),
    wavespeedRequests: new Counter({
      name: 'enhancement_wavespeed_requests_total',
      help: 'Requests to Wavespeed by operation and result.',
      labelNames: ['op', 'result'] as const,
      registers: [registry],
    }),
    ledgerCalls: new Counter({
      name: 'enhancement_ledger_calls_total',
      help: 'Calls to the ledger by method and result (ok, replayed, refused reason, or gRPC status).',
      labelNames: ['method', 'result'] as const,
      registers: [registry],
    }),
    holdsExtended: new Counter({
      name: 'enhancement_holds_extended_total',
      help: 'ExtendHold calls that moved a hold’s expiry.',
      registers: [registry],
    }),
    unknownOutcomes: new Counter({
      name: 'enhancement_unknown_submit_outcomes_total',
      help: 'Submits whose outcome was unknown, by how they were resolved (not_created, webhook, orphaned, undetermined).',
      labelNames: ['resolution'] as const,
      registers: [registry],
    }),
    upstreamCost: new Counter({
      name: 'enhancement_upstream_cost_micros_total',
      help: 'Upstream cost booked with the charge of each completed enhancement, in micro-units, by model and currency.',
      labelNames: ['model', 'currency'] as const,
      registers: [registry],
    }),
    uncharged: new Counter({
      name: 'enhancement_uncharged_results_total',
      help: 'Results delivered without a charge because the hold was gone and the balance could not pay.',
      registers: [registry],
    }),
  };
}

export type WorkerMetrics = ReturnType<typeof createWorkerMetrics>;
