import type pg from 'pg';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import { requestHash } from './domain/canonical.js';
import { LedgerError } from './domain/errors.js';
import { systemKeyPrefix } from './domain/limits.js';
import type { HoldTimeoutCommand } from './domain/types.js';
import type { WriteQueue } from './write-queue.js';

export const sweeperActor = 'ledger.hold-sweeper';

export interface HoldSweeperDeps {
  pool: pg.Pool;
  queue: WriteQueue;
  clock: Clock;
  log: Logger;
  periodMs: number;
  /** Holds voided per tick at most; a backlog drains over several ticks. */
  batchMax: number;
}

/**
 * Voids holds whose TTL passed, through the write queue like any command, so each timeout is
 * a journaled entry. The idempotency key is derived from the hold, so two ledger processes
 * sweeping at once write one entry per hold.
 */
export class HoldSweeper {
  readonly #deps: HoldSweeperDeps;
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<number> | null = null;

  constructor(deps: HoldSweeperDeps) {
    this.#deps = deps;
  }

  start(): void {
    const tick = () => {
      this.#running = this.sweepOnce()
        .catch((error: unknown) => {
          this.#deps.log.warn({ err: error }, 'hold sweep failed; will retry next period');
          return 0;
        })
        .finally(() => {
          this.#running = null;
          if (this.#timer !== null) this.#timer = setTimeout(tick, this.#deps.periodMs);
        });
    };
    this.#timer = setTimeout(tick, this.#deps.periodMs);
  }

  async stop(): Promise<void> {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    await this.#running;
  }

  /** One pass: times out up to batchMax lapsed holds. Returns how many it voided. */
  async sweepOnce(): Promise<number> {
    const { pool, queue, clock, batchMax } = this.#deps;
    // Inputs: now and the per-tick bound. Locks: none; the queue's batch locks the users.
    // Output: ids of open holds whose TTL passed, oldest first.
    const { rows } = await pool.query<{ id: string }>(
      `SELECT id::text FROM holds WHERE status = 'OPEN' AND expires_at <= $1 ORDER BY expires_at LIMIT $2`,
      [clock.now().toISOString(), batchMax],
    );
    const results = await Promise.allSettled(
      rows.map((row) => {
        const command: HoldTimeoutCommand = {
          kind: 'HOLD_TIMEOUT',
          idempotencyKey: `${systemKeyPrefix}hold-timeout:${row.id}`,
          holdId: row.id,
        };
        return queue.submit({ command, requestHash: requestHash(command), actor: sweeperActor, deadlineMs: Infinity });
      }),
    );
    let voided = 0;
    for (const r of results) {
      if (r.status === 'fulfilled') {
        if (!r.value.replayed) voided += 1;
      } else if (!(r.reason instanceof LedgerError && r.reason.code === 'FAILED_PRECONDITION')) {
        // A hold captured, released or extended meanwhile is refused, which is fine.
        this.#deps.log.warn({ err: r.reason }, 'hold timeout failed');
      }
    }
    if (voided > 0) this.#deps.log.info({ voided }, 'voided lapsed holds');
    return voided;
  }
}
