import type pg from 'pg';
import { settleAll } from './settle-all.js';
import type { LedgerState } from '../domain/ledger-state.js';

const str = (v: bigint | number | null): string | null => (v === null ? null : v.toString());
const iso = (v: Date | null): string | null => (v === null ? null : v.toISOString());

/**
 * Writes everything one batch posted, with one multi-row statement per table, inside the
 * batch's transaction (which holds the user locks and the journal head lock). Arrays are
 * passed as text and cast in SQL so that bigint values never pass through a JS number.
 */
export async function writeBatch(client: pg.PoolClient, state: LedgerState, previousHeadSeq: bigint): Promise<void> {
  const changes = state.changes();
  // Every statement is sent without waiting for the previous one (the connection pipelines);
  // none depends on another's result, and PostgreSQL runs them in the order sent.
  const pending: Promise<unknown>[] = [];
  // Named statements: each connection parses and plans them once, not once per batch.
  const q = (name: string, text: string, values: unknown[]) =>
    void pending.push(client.query({ name: `ledger.${name}`, text, values }));

  if (changes.newUsers.length > 0) {
    // Inputs: ids of users created by this batch's grants and purchases. Locks: the new rows.
    // ON CONFLICT: another process may have created the same user meanwhile; that is fine,
    // because creating lots needs no lock. Output: none.
    q('insert-users', 'INSERT INTO users (id) SELECT unnest($1::text[]) ON CONFLICT (id) DO NOTHING', [
      changes.newUsers,
    ]);
  }

  if (changes.newAccounts.length > 0) {
    const a = changes.newAccounts;
    // Inputs: new lot and deferred-revenue accounts with pre-allocated ids, totals zero (the
    // delta update below adds this batch's movements). Locks: the new rows. Output: none.
    q('insert-accounts',
      `INSERT INTO accounts (id, code, unit, kind, user_id, flags)
       SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[])`,
      [
        a.map((x) => x.id.toString()),
        a.map((x) => x.code),
        a.map((x) => x.unit),
        a.map((x) => x.kind),
        a.map((x) => x.userId),
        a.map((x) => x.flags),
      ],
    );
  }

  if (changes.newLots.length > 0) {
    const l = changes.newLots;
    // Inputs: the batch's new lots. Locks: the new rows; unique external_ref is re-checked by
    // the index. Output: none.
    q('insert-lots',
      `INSERT INTO lots (account_id, user_id, bucket, granted_credits, effective_at, expires_at,
                         priority, cost_basis_micros, currency, deferred_account_id, external_ref,
                         entry_seq, plan, period_start, refunded_micros, breakage_micros, expiry_swept,
                         disputed_micros, clawback_owed_credits, reversed, refunded_seq)
       SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::timestamptz[],
                            $6::timestamptz[], $7::int[], $8::bigint[], $9::text[], $10::bigint[],
                            $11::text[], $12::bigint[], $13::text[], $14::timestamptz[], $15::bigint[],
                            $16::bigint[], $17::boolean[], $18::bigint[], $19::bigint[], $20::boolean[], $21::bigint[])`,
      [
        l.map((x) => x.accountId.toString()),
        l.map((x) => x.userId),
        l.map((x) => x.bucket),
        l.map((x) => x.grantedCredits.toString()),
        l.map((x) => x.effectiveAt.toISOString()),
        l.map((x) => iso(x.expiresAt)),
        l.map((x) => x.priority),
        l.map((x) => x.costBasisMicros.toString()),
        l.map((x) => x.currency),
        l.map((x) => str(x.deferredAccountId)),
        l.map((x) => x.externalRef),
        l.map((x) => x.entrySeq.toString()),
        l.map((x) => x.plan),
        l.map((x) => iso(x.periodStart)),
        // A lot created in this batch may already have been refunded or expired in it.
        l.map((x) => x.refundedMicros.toString()),
        l.map((x) => x.breakageMicros.toString()),
        l.map((x) => x.expirySwept),
        l.map((x) => x.disputedMicros.toString()),
        l.map((x) => x.clawbackOwedCredits.toString()),
        l.map((x) => x.reversed),
        l.map((x) => str(x.refundedSeq)),
      ],
    );
  }

  if (changes.lotsChanged.length > 0) {
    const l = changes.lotsChanged;
    // Inputs: bookkeeping of existing lots (refunded so far, expiry handled). Locks: those
    // rows; their users are locked already. Output: none.
    q('update-lots',
      `UPDATE lots AS l
          SET refunded_micros = c.refunded_micros, breakage_micros = c.breakage_micros, expiry_swept = c.expiry_swept,
              disputed_micros = c.disputed_micros, clawback_owed_credits = c.clawback_owed_credits,
              reversed = c.reversed, refunded_seq = c.refunded_seq
         FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::boolean[], $5::bigint[], $6::bigint[], $7::boolean[], $8::bigint[])
           AS c(account_id, refunded_micros, breakage_micros, expiry_swept, disputed_micros, clawback_owed_credits, reversed, refunded_seq)
        WHERE l.account_id = c.account_id`,
      [
        l.map((x) => x.accountId.toString()),
        l.map((x) => x.refundedMicros.toString()),
        l.map((x) => x.breakageMicros.toString()),
        l.map((x) => x.expirySwept),
        l.map((x) => x.disputedMicros.toString()),
        l.map((x) => x.clawbackOwedCredits.toString()),
        l.map((x) => x.reversed),
        l.map((x) => str(x.refundedSeq)),
      ],
    );
  }

  const e = state.entries;
  if (e.length > 0) {
    // Inputs: the batch's entries in sequence order, hashes already chained. Locks: the new
    // rows; the unique index on idempotency_key backs the in-memory check. Output: none.
    q('insert-entries',
      `INSERT INTO entries (seq, kind, user_id, hold_id, idempotency_key, request_hash, actor,
                            recorded_at, effective_at, policy_version, allocation, metadata,
                            result, lots, reverses_seq, prev_hash, hash)
       SELECT seq, kind, user_id, hold_id, idempotency_key, decode(request_hash, 'hex'), actor,
              recorded_at, effective_at, policy_version, allocation::jsonb, metadata::jsonb,
              result::jsonb, lots::jsonb, reverses_seq, decode(prev_hash, 'hex'), decode(hash, 'hex')
         FROM unnest($1::bigint[], $2::text[], $3::text[], $4::uuid[], $5::text[], $6::text[],
                     $7::text[], $8::timestamptz[], $9::timestamptz[], $10::text[], $11::text[],
                     $12::text[], $13::text[], $17::text[], $16::bigint[], $14::text[], $15::text[])
           AS t(seq, kind, user_id, hold_id, idempotency_key, request_hash, actor, recorded_at,
                effective_at, policy_version, allocation, metadata, result, lots, reverses_seq,
                prev_hash, hash)`,
      [
        e.map((x) => x.seq.toString()),
        e.map((x) => x.kind),
        e.map((x) => x.userId),
        e.map((x) => x.holdId),
        e.map((x) => x.idempotencyKey),
        e.map((x) => x.requestHash.toString('hex')),
        e.map((x) => x.actor),
        e.map((x) => x.recordedAt.toISOString()),
        e.map((x) => x.effectiveAt.toISOString()),
        e.map((x) => x.policyVersion),
        e.map((x) => x.json.allocation),
        e.map((x) => x.json.metadata),
        e.map((x) => x.json.result),
        e.map((x) => x.prevHash.toString('hex')),
        e.map((x) => x.hash.toString('hex')),
        e.map((x) => str(x.reversesSeq)),
        e.map((x) => x.json.lots),
      ],
    );

    const t = e.flatMap((entry) => entry.transfers.map((transfer) => ({ seq: entry.seq, ...transfer })));
    if (t.length > 0) {
      // Inputs: every transfer of the batch's entries. Locks: the new rows. No foreign keys on
      // this table (see the migration); the audit's invariants prove its references. Output: none.
      q('insert-transfers',
        `INSERT INTO transfers (entry_seq, idx, kind, debit_account_id, credit_account_id, amount,
                                unit, pending_seq, pending_idx, debit_version, debit_balance_after,
                                debit_held_after, credit_version, credit_balance_after, credit_held_after)
         SELECT * FROM unnest($1::bigint[], $2::smallint[], $3::text[], $4::bigint[], $5::bigint[],
                              $6::bigint[], $7::text[], $8::bigint[], $9::smallint[], $10::bigint[],
                              $11::bigint[], $12::bigint[], $13::bigint[], $14::bigint[], $15::bigint[])`,
        [
          t.map((x) => x.seq.toString()),
          t.map((x) => x.idx),
          t.map((x) => x.kind),
          t.map((x) => x.debitAccountId.toString()),
          t.map((x) => x.creditAccountId.toString()),
          t.map((x) => x.amount.toString()),
          t.map((x) => x.unit),
          t.map((x) => str(x.pendingSeq)),
          t.map((x) => x.pendingIdx),
          t.map((x) => str(x.debitVersion)),
          t.map((x) => str(x.debitBalanceAfter)),
          t.map((x) => str(x.debitHeldAfter)),
          t.map((x) => str(x.creditVersion)),
          t.map((x) => str(x.creditBalanceAfter)),
          t.map((x) => str(x.creditHeldAfter)),
        ],
      );
    }
  }

  const d = changes.accountDeltas;
  if (d.length > 0) {
    // Inputs: per-account increments of the four totals and the version, sorted by id.
    // Locks: row locks on the updated accounts, taken in id order. User accounts are already
    // covered by their user's lock; platform accounts are touched once per batch, under the
    // head lock, so they are never a per-command hot spot. The CHECK constraints re-verify the
    // no-overdraft rule. Output: none.
    q('update-accounts',
      `UPDATE accounts AS a
          SET debits_posted = a.debits_posted + d.dp,
              credits_posted = a.credits_posted + d.cp,
              debits_pending = a.debits_pending + d.dpe,
              credits_pending = a.credits_pending + d.cpe,
              version = a.version + d.v
         FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[])
           AS d(id, dp, cp, dpe, cpe, v)
        WHERE a.id = d.id`,
      [
        d.map((x) => x.id.toString()),
        d.map((x) => x.debitsPosted.toString()),
        d.map((x) => x.creditsPosted.toString()),
        d.map((x) => x.debitsPending.toString()),
        d.map((x) => x.creditsPending.toString()),
        d.map((x) => x.version.toString()),
      ],
    );
  }

  if (changes.holdsInserted.length > 0) {
    const h = changes.holdsInserted;
    // Inputs: holds opened (and possibly already closed) by this batch. Locks: new rows. Output: none.
    q('insert-holds',
      `INSERT INTO holds (id, user_id, reserve_seq, credits, expires_at, status, closed_seq, captured_credits)
       SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::bigint[], $5::timestamptz[],
                            $6::text[], $7::bigint[], $8::bigint[])`,
      [
        h.map((x) => x.id),
        h.map((x) => x.userId),
        h.map((x) => x.reserveSeq.toString()),
        h.map((x) => x.credits.toString()),
        h.map((x) => x.expiresAt.toISOString()),
        h.map((x) => x.status),
        h.map((x) => str(x.closedSeq)),
        h.map((x) => str(x.capturedCredits)),
      ],
    );
  }

  if (changes.holdsChanged.length > 0) {
    const h = changes.holdsChanged;
    // Inputs: new state of holds that existed before the batch. Locks: those rows (their users
    // are locked already). Output: none.
    q('update-holds',
      `UPDATE holds AS h
          SET expires_at = c.expires_at, status = c.status, closed_seq = c.closed_seq,
              captured_credits = c.captured_credits
         FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::bigint[], $5::bigint[])
           AS c(id, expires_at, status, closed_seq, captured_credits)
        WHERE h.id = c.id`,
      [
        h.map((x) => x.id),
        h.map((x) => x.expiresAt.toISOString()),
        h.map((x) => x.status),
        h.map((x) => str(x.closedSeq)),
        h.map((x) => str(x.capturedCredits)),
      ],
    );
  }

  if (e.length > 0) {
    // Inputs: the new head. Locks: the head row, held since lockHead. The seq guard turns any
    // break of the locking protocol into a loud failure instead of a forked chain: updating no
    // row divides by zero, which aborts the transaction. Output: one row.
    q('advance-head',
      `WITH moved AS (
         UPDATE journal_head SET seq = $1, hash = $2, recorded_at = $3 WHERE id = 1 AND seq = $4 RETURNING 1)
       SELECT 1 / (SELECT COUNT(*)::int FROM moved) AS moved`,
      [state.headSeq.toString(), state.headHash, state.now.toISOString(), previousHeadSeq.toString()],
    );
  }
  await settleAll(pending);
}
