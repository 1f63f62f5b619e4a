import { createHash } from 'node:crypto';
import pg from 'pg';

/**
 * The unbatched baseline: what a Consume costs when every command is its own PostgreSQL
 * transaction, sent from Node straight to the database with no gRPC and no write queue. The
 * statements mirror what the ledger runs for a batch (execute-batch.ts, store/load-batch.ts,
 * store/write-batch.ts), reduced to one command: lock the user, lock the journal head, look up
 * the idempotency key, read the live lots, update the lot and platform accounts, insert the
 * entry and its transfer, advance the head, commit. All load goes to one hot user, so the
 * user's row lock serialises the transactions exactly as it would for an unbatched ledger.
 */

export interface BaselineAccounts {
  lotId: string;
  consumedId: string;
}

const consumedAccountCode = 'platform.credits_consumed';

/**
 * Gives the hot user one free lot of `credits` in a freshly migrated database, with plain
 * SQL (the baseline database never sees a ledger process).
 */
export async function seedBaseline(databaseUrl: string, hotUser: string, credits: bigint): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query('BEGIN');
    await client.query('INSERT INTO users (id) VALUES ($1)', [hotUser]);
    const account = await client.query<{ id: string }>(
      `INSERT INTO accounts (code, unit, kind, user_id, flags, credits_posted, version)
       VALUES ($1, 'CREDIT', 'LOT', $2, 1, $3, 1) RETURNING id::text`,
      [`user:${hotUser}:lot:baseline`, hotUser, credits.toString()],
    );
    const lotId = account.rows[0]?.id;
    if (lotId === undefined) throw new Error('baseline seed: the lot account was not created');
    await client.query(
      `INSERT INTO lots (account_id, user_id, bucket, granted_credits, effective_at, entry_seq)
       VALUES ($1, $2, 'BONUS', $3, now(), 0)`,
      [lotId, hotUser, credits.toString()],
    );
    await client.query(
      `UPDATE accounts SET debits_posted = debits_posted + $1, version = version + 1
        WHERE code = 'platform.credits_issued'`,
      [credits.toString()],
    );
    await client.query('COMMIT');
    // Fresh tables have no statistics; analysing them once keeps the plans of the measured
    // statements the same from run to run.
    await client.query('VACUUM ANALYZE');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    await client.end();
  }
}

export async function loadBaselineAccounts(pool: pg.Pool, hotUser: string): Promise<BaselineAccounts> {
  const { rows } = await pool.query<{ lot_id: string; consumed_id: string }>(
    `SELECT (SELECT account_id::text FROM lots WHERE user_id = $1 LIMIT 1) AS lot_id,
            (SELECT id::text FROM accounts WHERE code = $2) AS consumed_id`,
    [hotUser, consumedAccountCode],
  );
  const row = rows[0];
  if (!row?.lot_id || !row.consumed_id) throw new Error('baseline database is not seeded (run seedBaseline first)');
  return { lotId: row.lot_id, consumedId: row.consumed_id };
}

const sha256 = (...parts: (string | Buffer)[]): Buffer => {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part);
  return hash.digest();
};

/**
 * One Consume of `credits` from the hot user, as one transaction. Throws on any failure
 * (after rolling back); "insufficient credits" cannot happen with the seeded balance, so it is
 * treated as a failure of the bench rather than a refusal.
 */
export async function baselineConsume(
  pool: pg.Pool,
  accounts: BaselineAccounts,
  userId: string,
  idempotencyKey: string,
  credits: bigint,
): Promise<void> {
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query('BEGIN');
    // The user lock: serialises debits of one user, like lockUsers().
    await client.query('SELECT id FROM users WHERE id = $1 FOR UPDATE', [userId]);
    // The journal head: gapless sequence and previous hash, like lockHead().
    const head = await client.query<{ seq: string; hash: Buffer }>(
      'SELECT seq::text, hash FROM journal_head WHERE id = 1 FOR UPDATE',
    );
    const headRow = head.rows[0];
    if (!headRow) throw new Error('journal_head is missing');
    // The idempotency lookup, like storedKeys().
    const seen = await client.query('SELECT request_hash FROM entries WHERE idempotency_key = $1', [idempotencyKey]);
    if (seen.rowCount !== 0) throw new Error(`idempotency key ${idempotencyKey} was already used`);
    // The live lots with their balances, like liveLots().
    const lots = await client.query<{ account_id: string; available: string; version: string }>(
      `SELECT l.account_id::text, (a.credits_posted - a.debits_posted - a.debits_pending)::text AS available,
              a.version::text
         FROM lots l JOIN accounts a ON a.id = l.account_id
        WHERE l.user_id = $1 AND a.credits_posted > a.debits_posted
        ORDER BY l.priority, l.account_id`,
      [userId],
    );
    const lot = lots.rows.find((r) => r.account_id === accounts.lotId);
    if (!lot || BigInt(lot.available) < credits) throw new Error('baseline: the hot user ran out of credits');

    const seq = BigInt(headRow.seq) + 1n;
    const now = new Date().toISOString();
    const requestHash = sha256(JSON.stringify({ kind: 'CONSUME', idempotencyKey, userId, credits: credits.toString() }));
    const allocation = JSON.stringify([{ lot_id: accounts.lotId, credits: credits.toString() }]);
    const result = JSON.stringify({ entry_id: seq.toString(), allocation: JSON.parse(allocation) as unknown });
    const hash = sha256(headRow.hash, requestHash, seq.toString(), result);
    const lotVersion = BigInt(lot.version) + 1n;
    const lotBalanceAfter = BigInt(lot.available) - credits;

    // Account totals: the lot is debited, the platform's consumed account credited, like the
    // delta UPDATE of writeBatch().
    await client.query(
      `UPDATE accounts AS a
          SET debits_posted = a.debits_posted + d.dp, credits_posted = a.credits_posted + d.cp,
              version = a.version + 1
         FROM (VALUES ($1::bigint, $3::bigint, 0::bigint), ($2::bigint, 0::bigint, $3::bigint)) AS d(id, dp, cp)
        WHERE a.id = d.id`,
      [accounts.lotId, accounts.consumedId, credits.toString()],
    );
    await client.query(
      `INSERT INTO entries (seq, kind, user_id, idempotency_key, request_hash, actor, recorded_at,
                            effective_at, policy_version, allocation, metadata, result, prev_hash, hash)
       VALUES ($1, 'CONSUME', $2, $3, $4, 'bench', $5, $5, 'v1', $6::jsonb, '{}', $7::jsonb, $8, $9)`,
      [seq.toString(), userId, idempotencyKey, requestHash, now, allocation, result, headRow.hash, hash],
    );
    await client.query(
      `INSERT INTO transfers (entry_seq, idx, kind, debit_account_id, credit_account_id, amount, unit,
                              debit_version, debit_balance_after, credit_version)
       VALUES ($1, 0, 'POSTED', $2, $3, $4, 'CREDIT', $5, $6, NULL)`,
      [seq.toString(), accounts.lotId, accounts.consumedId, credits.toString(), lotVersion.toString(), lotBalanceAfter.toString()],
    );
    const moved = await client.query('UPDATE journal_head SET seq = $1, hash = $2 WHERE id = 1 AND seq = $3', [
      seq.toString(),
      hash,
      headRow.seq,
    ]);
    if (moved.rowCount !== 1) throw new Error('journal head moved under a held lock');
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {
      broken = true;
    });
    throw error;
  } finally {
    client.release(broken);
  }
}
