import type pg from 'pg';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * The ledger's Prometheus metrics, on a registry of its own: calls by method and status with
 * their latency, batch sizes and commit latency, the write queue's depth, open StreamJournal
 * calls, open holds, health.
 */
export class LedgerMetrics {
  readonly registry = new Registry();
  readonly calls = new Counter({
    name: 'ledger_grpc_calls_total',
    help: 'gRPC calls answered, by method and status code name.',
    labelNames: ['method', 'code'] as const,
    registers: [this.registry],
  });
  readonly callSeconds = new Histogram({
    name: 'ledger_grpc_call_seconds',
    help: 'gRPC call latency, by method.',
    labelNames: ['method'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
    registers: [this.registry],
  });
  readonly batchSize = new Histogram({
    name: 'ledger_batch_commands',
    help: 'Commands per write batch (one transaction).',
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
    registers: [this.registry],
  });
  readonly batchSeconds = new Histogram({
    name: 'ledger_batch_seconds',
    help: 'Time from a batch start to its commit.',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5],
    registers: [this.registry],
  });

  /**
   * The labelled children of calls and callSeconds, by method and code. prom-client's labels()
   * hashes the label values on every call; there are few methods and codes, so each child is
   * looked up once and kept (a bounded map: methods × codes).
   */
  readonly #callChildren = new Map<string, { count: { inc(): void }; seconds: { observe(v: number): void } }>();

  /** One answered gRPC call: counted by method and code, timed by method. */
  recordCall(method: string, code: string, seconds: number): void {
    const key = `${method}\u0000${code}`;
    let child = this.#callChildren.get(key);
    if (!child) {
      child = { count: this.calls.labels(method, code), seconds: this.callSeconds.labels(method) };
      this.#callChildren.set(key, child);
    }
    child.count.inc();
    child.seconds.observe(seconds);
  }

  constructor(deps: {
    pool: pg.Pool;
    queueLength: () => number;
    streamsOpen: () => number;
    serving: () => boolean;
    clockSkewMs: () => number;
  }) {
    collectDefaultMetrics({ register: this.registry, prefix: 'ledger_' });
    new Gauge({
      name: 'ledger_write_queue_length',
      help: 'Commands waiting for a batch.',
      registers: [this.registry],
      collect() {
        this.set(deps.queueLength());
      },
    });
    new Gauge({
      name: 'ledger_streams_open',
      help: 'StreamJournal calls open in this process (at most LEDGER_STREAMS_MAX).',
      registers: [this.registry],
      collect() {
        this.set(deps.streamsOpen());
      },
    });
    new Gauge({
      name: 'ledger_serving',
      help: '1 while grpc.health.v1 reports SERVING, 0 otherwise.',
      registers: [this.registry],
      collect() {
        this.set(deps.serving() ? 1 : 0);
      },
    });
    new Gauge({
      name: 'ledger_clock_skew_ms',
      help: "This process's clock minus the database's, at the last health probe.",
      registers: [this.registry],
      collect() {
        this.set(deps.clockSkewMs());
      },
    });
    new Gauge({
      name: 'ledger_holds_open',
      help: 'Holds open now, and those past their TTL not yet voided by the sweeper.',
      labelNames: ['state'] as const,
      registers: [this.registry],
      async collect() {
        // Inputs: none. Locks: none. Output: open holds, and the lapsed ones among them.
        const { rows } = await deps.pool.query<{ open: string; lapsed: string }>(
          `SELECT count(*)::text AS open, count(*) FILTER (WHERE expires_at < now())::text AS lapsed
             FROM holds WHERE status = 'OPEN'`,
        );
        this.set({ state: 'open' }, Number(rows[0]!.open));
        this.set({ state: 'lapsed' }, Number(rows[0]!.lapsed));
      },
    });
  }
}
