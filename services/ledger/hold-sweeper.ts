import type pg from 'pg';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import { requestHash } from './domain/canonical.js';
import { LedgerError } from './domain/errors.js';
import { systemKeyPrefix } from './domain/limits.js';
import type { Command } from './domain/types.js';
import { PeriodicTask } from './periodic-task.js';
import type { WriteQueue } from './write-queue.js';

export const sweeperActor = 'ledger.sweeper';

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
  readonly #task: PeriodicTask;

  constructor(deps: HoldSweeperDeps) {
    this.#deps = deps;
    this.#task = new PeriodicTask('hold-sweeper', deps.periodMs, async () => ({
      full: (await this.sweepOnce()) >= deps.batchMax,
    }), deps.log);
  }

  start(): void {
    this.#task.start();
  }

  stop(): Promise<void> {
    return this.#task.stop();
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
    const voided = await submitAll(
      queue,
      rows.map((row) => ({ kind: 'HOLD_TIMEOUT', idempotencyKey: `${systemKeyPrefix}hold-timeout:${row.id}`, holdId: row.id })),
      this.#deps.log,
    );
    if (voided > 0) this.#deps.log.info({ voided }, 'voided lapsed holds');
    return voided;
  }
}

/**
 * Submits the ledger's own commands through the write queue like any caller's, so each is a
 * journaled entry under a key derived from its target: two ledger processes sweeping at once
 * write one entry per target. Returns how many wrote an entry; refusals (the target changed
 * meanwhile) are expected and not errors.
 */
export async function submitAll(queue: WriteQueue, commands: Command[], log: Logger): Promise<number> {
  const results = await Promise.allSettled(
    commands.map((command) =>
      queue.submit({ command, requestHash: requestHash(command), actor: sweeperActor, deadlineMs: Infinity }),
    ),
  );
  let written = 0;
  for (const r of results) {
    if (r.status === 'fulfilled') {
      if (!r.value.replayed) written += 1;
    } else if (!(r.reason instanceof LedgerError && r.reason.code === 'FAILED_PRECONDITION')) {
      log.warn({ err: r.reason }, 'sweeper command failed');
    }
  }
  return written;
}
