import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { InboxStats } from './inbox/inbox-store.js';

/** The service's Prometheus metrics, on a registry of its own (served at GET /metrics). */
export class PaymentsMetrics {
  readonly registry = new Registry();
  readonly webhooksReceived = new Counter({
    name: 'payments_webhooks_received_total',
    help: 'Stripe webhook deliveries, by event type and outcome (stored, duplicate, rejected).',
    labelNames: ['type', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly webhooksApplied = new Counter({
    name: 'payments_webhooks_applied_total',
    help: 'Stored events finished by the applier, by type and result (applied, ignored).',
    labelNames: ['type', 'result'] as const,
    registers: [this.registry],
  });
  readonly webhooksParked = new Counter({
    name: 'payments_webhooks_parked_total',
    help: 'Stored events that can never apply as they are, by type.',
    labelNames: ['type'] as const,
    registers: [this.registry],
  });
  readonly webhookRetries = new Counter({
    name: 'payments_webhook_retries_total',
    help: 'Apply attempts put back for later, by type and cause (retry: ledger trouble; wait: purchase not there yet).',
    labelNames: ['type', 'cause'] as const,
    registers: [this.registry],
  });
  readonly ledgerCallSeconds = new Histogram({
    name: 'payments_ledger_call_seconds',
    help: 'Ledger gRPC call latency, by method and gRPC status.',
    labelNames: ['method', 'code'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
    registers: [this.registry],
  });
  readonly webhookAckSeconds = new Histogram({
    name: 'payments_webhook_ack_seconds',
    help: 'Time from a webhook request to its answer (signature check and inbox insert).',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [this.registry],
  });

  constructor(inboxStats: () => Promise<InboxStats>) {
    collectDefaultMetrics({ register: this.registry, prefix: 'payments_' });
    const registry = this.registry;
    let last: Promise<InboxStats> | null = null;
    // The three inbox gauges share one query per scrape.
    const stats = () => (last ??= inboxStats().finally(() => setTimeout(() => (last = null), 0)));
    new Gauge({
      name: 'payments_inbox_lag_seconds',
      help: 'Age of the oldest stored event not yet applied (0 when none).',
      registers: [registry],
      async collect() {
        this.set((await stats()).oldestPendingMs / 1000);
      },
    });
    new Gauge({
      name: 'payments_inbox_pending',
      help: 'Stored events waiting to be applied.',
      registers: [registry],
      async collect() {
        this.set((await stats()).pending);
      },
    });
    new Gauge({
      name: 'payments_inbox_parked',
      help: 'Stored events parked for an operator.',
      registers: [registry],
      async collect() {
        this.set((await stats()).parked);
      },
    });
  }

  /** Wraps a ledger client's methods so that each call's latency and status are recorded. */
  instrument<T extends object>(client: T, methods: readonly (keyof T & string)[]): T {
    const wrapped = Object.create(client) as T;
    for (const method of methods) {
      const fn = (client[method] as unknown as (...args: unknown[]) => Promise<unknown>).bind(client);
      (wrapped as Record<string, unknown>)[method] = async (...args: unknown[]) => {
        const end = this.ledgerCallSeconds.startTimer({ method });
        try {
          const result = await fn(...args);
          end({ code: 'OK' });
          return result;
        } catch (error) {
          end({ code: String((error as { code?: number }).code ?? 'ERROR') });
          throw error;
        }
      };
    }
    return wrapped;
  }
}
