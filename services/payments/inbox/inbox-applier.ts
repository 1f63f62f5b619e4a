import type Stripe from 'stripe';
import type { Clock } from '../../lib/clock.js';
import type { Logger } from '../../lib/logger.js';
import type { InboxApplyOptions } from '../config.js';
import type { PaymentsMetrics } from '../metrics.js';
import { applyStripeEvent, type ApplyDeps, type ApplyOutcome } from './apply-event.js';
import type { ClaimedEvent, InboxStore } from './inbox-store.js';

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
    await Promise.all(claimed.map((event) => this.#applyOne(event)));
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

  async #applyOne(event: ClaimedEvent): Promise<void> {
    const log = this.log.child({ stripe_event_id: event.eventId, event_type: event.type, stripe_object_id: event.objectId });
    let outcome: ApplyOutcome;
    try {
      outcome = await applyStripeEvent(event.payload as Stripe.Event, this.deps);
    } catch (error) {
      outcome = { kind: 'retry', reason: `apply failed: ${(error as Error).message}` };
    }
    const now = this.clock.now();
    switch (outcome.kind) {
      case 'applied':
        await this.store.finish(event.eventId, 'APPLIED', now, outcome.entryId > 0n ? { entryId: outcome.entryId } : {});
        this.metrics.webhooksApplied.inc({ type: event.type, result: 'applied' });
        log.info({ entry_id: outcome.entryId.toString(), attempts: event.attempts }, `applied: ${outcome.detail}`);
        return;
      case 'ignored':
        await this.store.finish(event.eventId, 'IGNORED', now, { error: outcome.reason });
        this.metrics.webhooksApplied.inc({ type: event.type, result: 'ignored' });
        log.info({ reason: outcome.reason }, 'ignored');
        return;
      case 'park':
        await this.#park(event, outcome.reason, log);
        return;
      case 'wait': {
        const waitedMs = now.getTime() - event.receivedAt.getTime();
        if (waitedMs >= this.options.waitForPurchaseMs) {
          await this.#park(event, `waited ${waitedMs} ms for its purchase: ${outcome.reason}`, log);
          return;
        }
        await this.#later(event, 'wait', outcome.reason, log);
        return;
      }
      case 'retry':
        await this.#later(event, 'retry', outcome.reason, log);
        return;
    }
  }

  async #park(event: ClaimedEvent, reason: string, log: Logger): Promise<void> {
    await this.store.finish(event.eventId, 'PARKED', this.clock.now(), { error: reason });
    this.metrics.webhooksParked.inc({ type: event.type });
    log.error({ reason, attempts: event.attempts }, 'parked: the event cannot apply; an operator must look at it');
  }

  async #later(event: ClaimedEvent, cause: 'wait' | 'retry', reason: string, log: Logger): Promise<void> {
    const delayMs = backoffMs(event.attempts, this.options.retryBaseMs, this.options.retryMaxMs);
    await this.store.retryAt(event.eventId, new Date(this.clock.now().getTime() + delayMs), reason);
    this.metrics.webhookRetries.inc({ type: event.type, cause });
    log.warn({ reason, attempts: event.attempts, retry_in_ms: delayMs }, cause === 'wait' ? 'waiting for its purchase' : 'will retry');
  }
}

/** Exponential backoff with equal jitter: between half and all of base·2^(attempts−1), capped at max. */
export function backoffMs(attempts: number, baseMs: number, maxMs: number): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(30, Math.max(0, attempts - 1)));
  return Math.max(1, Math.round(ceiling / 2 + (Math.random() * ceiling) / 2));
}
