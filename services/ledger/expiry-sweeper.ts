import { systemKeyPrefix } from './domain/limits.js';
import { ledgerNowSql } from './domain/ledger-time.js';
import { PeriodicTask } from '../lib/periodic-task.js';
import { submitAll, type SweeperDeps } from './sweeper-commands.js';

/**
 * Expires lots past their expires_at: each one with an unheld remainder gets an EXPIRE entry
 * through the write queue. Lots with nothing left at expiry are only marked as done, which is
 * bookkeeping, not a movement: there is nothing to journal.
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
    // finished, oldest expiry first, with what is left unheld in them.
    const { rows } = await pool.query<{ account_id: string; unheld: string; version: string }>(
      `SELECT l.account_id::text, (a.credits_posted - a.debits_posted - a.debits_pending)::text AS unheld,
              a.version::text
         FROM lots l JOIN accounts a ON a.id = l.account_id
        WHERE l.expires_at IS NOT NULL AND NOT l.expiry_swept
          AND l.expires_at <= ${ledgerNowSql(1)}
        ORDER BY l.expires_at LIMIT $2`,
      [now, batchMax],
    );
    const empty = rows.filter((r) => BigInt(r.unheld) <= 0n).map((r) => r.account_id);
    let finished = 0;
    if (empty.length > 0) finished = await markFinished(pool, empty);
    const expired = await submitAll(
      queue,
      rows
        .filter((r) => BigInt(r.unheld) > 0n)
        // The key names the lot's version: two sweepers that saw the same state write one
        // entry, and a lot given credits again later (a reversal) can be expired again.
        .map((r) => ({
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

/**
 * Marks expired lots with nothing unheld as done. It takes the same locks a batch takes for
 * these lots, in the same order (their users' rows, sorted by id), in one transaction: a batch
 * that loaded one of these lots (a release giving credits back to it, a reversal) holds its
 * user's lock until it commits, so the mark can neither be overwritten by the batch's write of
 * the lot nor overwrite it, and the condition is re-checked on what the batch committed.
 */
async function markFinished(pool: SweeperDeps['pool'], lotIds: string[]): Promise<number> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    // Inputs: lot ids. Locks: FOR UPDATE on their users' rows, in id order (as batches take
    // them). Output: none.
    await client.query(
      `SELECT u.id FROM users u
        WHERE u.id IN (SELECT user_id FROM lots WHERE account_id = ANY($1::bigint[]))
        ORDER BY u.id FOR UPDATE`,
      [lotIds],
    );
    // Inputs: expired lots with nothing unheld. Locks: those lot rows (their users are locked).
    // The condition is re-checked: a lot that regained credits meanwhile stays for the next
    // pass. Held credits need no sweep: their release expires them. Output: how many were marked.
    const marked = await client.query(
      `UPDATE lots AS l SET expiry_swept = true
         FROM accounts a
        WHERE a.id = l.account_id AND l.account_id = ANY($1::bigint[]) AND NOT l.expiry_swept
          AND a.credits_posted - a.debits_posted - a.debits_pending <= 0`,
      [lotIds],
    );
    await client.query('COMMIT');
    return marked.rowCount ?? 0;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}
