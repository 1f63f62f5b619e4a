import { status, type ServiceError } from '@grpc/grpc-js';
import { errorReason, type LedgerApi } from '../ledger/client/index.js';
import type { Logger } from '../lib/logger.js';
import type { WorkerMetrics } from './metrics.js';
import { sleep } from './sleep.js';

/** The ledger methods the worker uses (its `worker` role allows exactly these and reads). */
export type WorkerLedger = Pick<LedgerApi, 'reserve' | 'extendHold' | 'capture' | 'release' | 'consume'>;
type Method = keyof WorkerLedger;
type Req<M extends Method> = Parameters<WorkerLedger[M]>[0];
type Res<M extends Method> = Awaited<ReturnType<WorkerLedger[M]>>;

/** A business refusal (FAILED_PRECONDITION with a reason) or a reused key (ALREADY_EXISTS). */
export type LedgerOutcome<T> = { ok: true; value: T } | { ok: false; reason: string; message: string };

/** The ledger could not be reached within the retry window; the job is retried later. */
export class LedgerUnavailable extends Error {}

const transient = new Set<number>([status.UNAVAILABLE, status.DEADLINE_EXCEEDED, status.RESOURCE_EXHAUSTED, status.ABORTED]);

/**
 * Calls the ledger with the job's idempotency keys, retrying transient failures (the ledger
 * restarting, back-pressure) with backoff for up to `retryMs`. A retried write is safe: the
 * same key and request return the first result. Refusals come back as values.
 */
export class LedgerGateway {
  constructor(
    private readonly ledger: WorkerLedger,
    private readonly metrics: WorkerMetrics,
    private readonly retryMs: number,
    private readonly callTimeoutMs = 10_000,
  ) {}

  async call<M extends Method>(method: M, request: Req<M>, log: Logger, signal?: AbortSignal): Promise<LedgerOutcome<Res<M>>> {
    const deadline = Date.now() + this.retryMs;
    let delayMs = 100;
    for (;;) {
      try {
        const fn = this.ledger[method] as (r: Req<M>, o: { timeoutMs: number }) => Promise<Res<M>>;
        const value = await fn.call(this.ledger, request, { timeoutMs: this.callTimeoutMs });
        this.metrics.ledgerCalls.inc({ method, result: (value as { replayed?: boolean }).replayed ? 'replayed' : 'ok' });
        return { ok: true, value };
      } catch (error) {
        const e = error as ServiceError;
        if (e.code === status.FAILED_PRECONDITION || e.code === status.ALREADY_EXISTS) {
          const reason = e.code === status.ALREADY_EXISTS ? 'ALREADY_EXISTS' : (errorReason(e) ?? 'FAILED_PRECONDITION');
          this.metrics.ledgerCalls.inc({ method, result: reason });
          return { ok: false, reason, message: e.details ?? e.message };
        }
        this.metrics.ledgerCalls.inc({ method, result: status[e.code] ?? 'error' });
        if (!transient.has(e.code)) throw error;
        if (Date.now() + delayMs > deadline) {
          throw new LedgerUnavailable(`ledger ${method}: ${status[e.code]} for ${this.retryMs} ms: ${e.details ?? e.message}`);
        }
        log.warn({ method, code: status[e.code], retryInMs: delayMs }, 'ledger unavailable; retrying');
        // A shutdown hands the job back rather than waiting out the ledger (HandBack).
        await sleep(delayMs, signal);
        delayMs = Math.min(delayMs * 2, 2_000);
      }
    }
  }
}
