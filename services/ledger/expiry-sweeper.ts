import { systemKeyPrefix } from './domain/limits.js';
import { ledgerNowSql } from './domain/ledger-time.js';
import { PeriodicTask } from '../lib/periodic-task.js';
import { submitAll, type SweeperDeps } from './sweeper-commands.js';

/**
 * Expires lots past their expires_at through the write queue: each one with an unheld
 * remainder gets an EXPIRE entry; one with nothing left is only marked as done by its batch,
 * which is bookkeeping, not a movement: there is nothing to journal.
 */
export class ExpirySweeper {
  readonly #deps: SweeperDeps;
  readonly #task: PeriodicTask;

  constructor(deps: SweeperDeps) {
    this.#deps = deps;
    this.#task = new PeriodicTask('expiry-sweeper', deps.periodMs, async () => ({
      full: (await this.sweepOnce()).examined >= deps.batchMax,
    }), deps.log);
  }

  start(): void {
    this.#task.start();
  }

  stop(): Promise<void> {
    return this.#task.stop();
  }

  /** One pass over at most batchMax lots past expiry. */
  async sweepOnce(): Promise<{ examined: number; expired: number; finished: number }> {
    const { pool, queue, clock, batchMax, log } = this.#deps;
    const now = clock.now().toISOString();
    // Inputs: now, the per-pass bound. Locks: none. Output: lots past expiry by ledger time
    // (this clock, never behind the journal head's recorded_at) that the sweeper has not
    // finished, oldest expiry first, with their accounts' versions (for the idempotency key).
    const { rows } = await pool.query<{ account_id: string; version: string }>(
      `SELECT l.account_id::text, a.version::text
         FROM lots l JOIN accounts a ON a.id = l.account_id
        WHERE l.expires_at IS NOT NULL AND NOT l.expiry_swept
          AND l.expires_at <= ${ledgerNowSql(1)}
        ORDER BY l.expires_at LIMIT $2`,
      [now, batchMax],
    );
    // Lots with nothing unheld are marked finished by the batch itself (no entry): the write
    // of the lot row happens under the batch's locks, like every other write of it.
    const { entries: expired, bookkeeping: finished } = await submitAll(
      queue,
      // The key names the lot's version: two sweepers that saw the same state write one
      // entry, and a lot given credits again later (a reversal) can be expired again.
      rows.map((r) => ({
        kind: 'EXPIRE',
        idempotencyKey: `${systemKeyPrefix}expire-lot:${r.account_id}:v${r.version}`,
        lotId: BigInt(r.account_id),
      })),
      log,
    );
    if (expired > 0) log.info({ expired }, 'expired lots');
    return { examined: rows.length, expired, finished };
  }
}
