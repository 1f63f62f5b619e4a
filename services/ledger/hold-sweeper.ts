import { systemKeyPrefix } from './domain/limits.js';
import { ledgerNowSql } from './domain/ledger-time.js';
import { PeriodicTask } from '../lib/periodic-task.js';
import { submitAll, type SweeperDeps } from './sweeper-commands.js';

/**
 * Voids holds whose TTL passed, through the write queue like any command, so each timeout is
 * a journaled entry. The idempotency key is derived from the hold, so two ledger processes
 * sweeping at once write one entry per hold.
 */
export class HoldSweeper {
  readonly #deps: SweeperDeps;
  readonly #task: PeriodicTask;

  constructor(deps: SweeperDeps) {
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
    // Output: ids of open holds whose TTL passed by ledger time (this clock, never behind the
    // journal head's recorded_at), oldest first.
    const { rows } = await pool.query<{ id: string }>(
      `SELECT id::text FROM holds
        WHERE status = 'OPEN'
          AND expires_at <= ${ledgerNowSql(1)}
        ORDER BY expires_at LIMIT $2`,
      [clock.now().toISOString(), batchMax],
    );
    const { entries: voided } = await submitAll(
      queue,
      rows.map((row) => ({ kind: 'HOLD_TIMEOUT', idempotencyKey: `${systemKeyPrefix}hold-timeout:${row.id}`, holdId: row.id })),
      this.#deps.log,
    );
    if (voided > 0) this.#deps.log.info({ voided }, 'voided lapsed holds');
    return voided;
  }
}
