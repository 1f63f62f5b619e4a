import { contextFrom, inSpan } from '../../lib/tracing.js';
import type Stripe from 'stripe';
import type { Clock } from '../../lib/clock.js';
import type { Logger } from '../../lib/logger.js';
import type { InboxApplyOptions } from '../config.js';
import type { PaymentsMetrics } from '../metrics.js';
import { applyStripeEvent, type ApplyDeps, type ApplyOutcome } from './apply-event.js';
import type { ClaimedEvent, InboxStore, Outcome } from './inbox-store.js';

/**
 * Applies stored events to the ledger: claims a bounded batch of due events, applies them
 * concurrently (the ledger batches them into few transactions), records each outcome. A pass
 * runs every `periodMs`, at once again while passes come back full (a backlog after an outage
 * drains without waiting a period per batch), and soon after a webhook is stored (`wake`), so
 * credits appear within milliseconds of the payment. Never two passes at once per process;
 * several processes share the inbox safely (claims skip each other's rows).
 */
export class InboxApplier {
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<void> | null = null;
  #again = false;
  #stopped = true;

  constructor(
    private readonly store: InboxStore,
    private readonly deps: ApplyDeps,
    private readonly options: InboxApplyOptions,
    private readonly clock: Clock,
    private readonly metrics: PaymentsMetrics,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.#stopped = false;
    this.#schedule(0);
  }

  /** Asks for a pass soon (a new event was stored). */
  wake(): void {
    if (this.#stopped) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#schedule(0);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    await this.#running;
  }

  /** One pass: returns how many events it claimed. Exposed for tests and the bench. */
  async runOnce(): Promise<number> {
    const claimed = await this.store.claimDue(this.clock.now(), this.options.batchMax, this.options.leaseMs);
    if (claimed.length === 0) return 0;
    const decided = await Promise.all(claimed.map((event) => this.#decide(event)));
    // One statement per kind of outcome for the whole pass; logs and metrics once it is recorded.
    await this.store.record(
      decided.map((d) => d.outcome),
      this.clock.now(),
    );
    for (const d of decided) d.report();
    return claimed.length;
  }

  #schedule(delayMs: number): void {
    if (this.#stopped) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      if (this.#running) {
        this.#again = true;
        return;
      }
      this.#again = false;
      this.#running = this.runOnce()
        .then((n) => n >= this.options.batchMax)
        .catch((error: unknown) => {
          this.log.warn({ err: error }, 'inbox pass failed; will retry next period');
          return false;
        })
        .then((full) => {
          this.#running = null;
          this.#schedule(full || this.#again ? 0 : this.options.periodMs);
        });
    }, delayMs);
  }

  async #decide(event: ClaimedEvent): Promise<{ outcome: Outcome; report: () => void }> {
    const log = this.log.child({ stripe_event_id: event.eventId, event_type: event.type, stripe_object_id: event.objectId });
    let applied: ApplyOutcome;
    try {
      // Applied later, maybe in another process: the span continues the delivery's trace.
      applied = await inSpan(
        'payments',
        `apply ${event.type}`,
        { parent: contextFrom(event.traceparent), attributes: { 'stripe.event_id': event.eventId, 'stripe.event_type': event.type, 'stripe.object_id': event.objectId } },
        () => applyStripeEvent(event.payload as Stripe.Event, this.deps),
      );
    } catch (error) {
      applied = { kind: 'retry', reason: `apply failed: ${(error as Error).message}` };
    }
    const id = event.eventId;
    const type = event.type;
    switch (applied.kind) {
      case 'applied':
        return {
          outcome: { eventId: id, status: 'APPLIED', ...(applied.entryId > 0n ? { entryId: applied.entryId } : {}) },
          report: () => {
            this.metrics.webhooksApplied.inc({ type, result: 'applied' });
            log.info({ entry_id: applied.entryId.toString(), attempts: event.attempts }, `applied: ${applied.detail}`);
          },
        };
      case 'ignored':
        return {
          outcome: { eventId: id, status: 'IGNORED', error: applied.reason },
          report: () => {
            this.metrics.webhooksApplied.inc({ type, result: 'ignored' });
            log.info({ reason: applied.reason }, 'ignored');
          },
        };
      case 'park':
        return this.#park(event, applied.reason, log);
      case 'wait': {
        const waitedMs = this.clock.now().getTime() - event.receivedAt.getTime();
        if (waitedMs >= this.options.waitForPurchaseMs) return this.#park(event, `waited ${waitedMs} ms for its purchase: ${applied.reason}`, log);
        return this.#later(event, 'wait', applied.reason, log);
      }
      case 'retry':
        return this.#later(event, 'retry', applied.reason, log);
    }
  }

  #park(event: ClaimedEvent, reason: string, log: Logger): { outcome: Outcome; report: () => void } {
    return {
      outcome: { eventId: event.eventId, status: 'PARKED', error: reason },
      report: () => {
        this.metrics.webhooksParked.inc({ type: event.type });
        log.error({ reason, attempts: event.attempts }, 'parked: the event cannot apply; an operator must look at it');
      },
    };
  }

  #later(event: ClaimedEvent, cause: 'wait' | 'retry', reason: string, log: Logger): { outcome: Outcome; report: () => void } {
    const delayMs = backoffMs(event.attempts, this.options.retryBaseMs, this.options.retryMaxMs);
    return {
      outcome: { eventId: event.eventId, status: 'PENDING', dueAt: new Date(this.clock.now().getTime() + delayMs), error: reason },
      report: () => {
        this.metrics.webhookRetries.inc({ type: event.type, cause });
        log.warn({ reason, attempts: event.attempts, retry_in_ms: delayMs }, cause === 'wait' ? 'waiting for its purchase' : 'will retry');
      },
    };
  }
}

/** Exponential backoff with equal jitter: between half and all of base·2^(attempts−1), capped at max. */
export function backoffMs(attempts: number, baseMs: number, maxMs: number): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(30, Math.max(0, attempts - 1)));
  return Math.max(1, Math.round(ceiling / 2 + (Math.random() * ceiling) / 2));
}
