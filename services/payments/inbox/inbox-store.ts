import type pg from 'pg';

/**
 * The Stripe event inbox (payments.stripe_events), through `pg` with a contract comment above
 * each statement. Its rows are written by the webhook route and by the applier; nothing else.
 */

export type EventStatus = 'PENDING' | 'APPLIED' | 'IGNORED' | 'PARKED';

export interface IncomingEvent {
  eventId: string;
  type: string;
  objectId: string;
  livemode: boolean;
  apiVersion: string | null;
  createdAt: Date;
  /** The verified body as received. */
  payload: string;
}

export interface ClaimedEvent {
  eventId: string;
  type: string;
  objectId: string;
  payload: unknown;
  attempts: number;
  receivedAt: Date;
}

export interface InboxStats {
  pending: number;
  parked: number;
  /** Age of the oldest pending event, 0 when none. */
  oldestPendingMs: number;
}

export class InboxStore {
  constructor(private readonly pool: pg.Pool) {}

  /**
   * Stores a verified event once. `status` is PENDING for types the applier handles, IGNORED
   * for the rest (recorded, never applied). Returns false when the event id was stored before.
   */
  async store(event: IncomingEvent, status: 'PENDING' | 'IGNORED', now: Date): Promise<boolean> {
    // Inputs: the event's columns, its initial status and the receipt time. Locks: the new row
    // (the primary key on event_id makes a duplicate delivery a no-op, also when 20 arrive at
    // once). Output: the row when it was inserted, nothing for a duplicate.
    const result = await this.pool.query(
      `INSERT INTO payments.stripe_events
         (event_id, type, object_id, livemode, api_version, stripe_created_at, received_at, payload,
          status, next_attempt_at, finished_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $7, CASE WHEN $9 = 'PENDING' THEN NULL ELSE $7::timestamptz END)
       ON CONFLICT (event_id) DO NOTHING
       RETURNING event_id`,
      [event.eventId, event.type, event.objectId, event.livemode, event.apiVersion, event.createdAt, now, event.payload, status],
    );
    return result.rowCount === 1;
  }

  /**
   * Claims up to `limit` due events for one apply pass: each claim counts an attempt and moves
   * the event's due time a lease ahead, so a process that dies mid-apply leaves the event to be
   * claimed again once the lease is over (the ledger's idempotency keys make that safe).
   */
  async claimDue(now: Date, limit: number, leaseMs: number): Promise<ClaimedEvent[]> {
    // Inputs: now, the batch bound, the lease. Locks: the claimed rows, briefly (SKIP LOCKED:
    // concurrent appliers take disjoint sets). Output: the claimed events, oldest due first.
    const result = await this.pool.query<{ event_id: string; type: string; object_id: string; payload: unknown; attempts: number; received_at: Date; due: Date }>(
      `WITH due AS (
         SELECT event_id, next_attempt_at FROM payments.stripe_events
          WHERE status = 'PENDING' AND next_attempt_at <= $1
          ORDER BY next_attempt_at
          LIMIT $2
          FOR UPDATE SKIP LOCKED)
       UPDATE payments.stripe_events e
          SET attempts = e.attempts + 1, next_attempt_at = $1::timestamptz + make_interval(secs => $3::double precision / 1000)
         FROM due
        WHERE e.event_id = due.event_id
       RETURNING e.event_id, e.type, e.object_id, e.payload, e.attempts, e.received_at, due.next_attempt_at AS due`,
      [now, limit, leaseMs],
    );
    return result.rows
      .sort((a, b) => a.due.getTime() - b.due.getTime())
      .map((r) => ({ eventId: r.event_id, type: r.type, objectId: r.object_id, payload: r.payload, attempts: r.attempts, receivedAt: r.received_at }));
  }

  /** Records the end of a claimed event: applied, ignored or parked. */
  async finish(eventId: string, status: 'APPLIED' | 'IGNORED' | 'PARKED', now: Date, detail: { entryId?: bigint; error?: string } = {}): Promise<void> {
    // Inputs: the event, its final status, the time, the ledger entry or the reason. Locks: the
    // row. Output: none. Only a PENDING row changes: a finished event stays as it ended.
    await this.pool.query(
      `UPDATE payments.stripe_events
          SET status = $2, finished_at = $3, ledger_entry_id = $4, last_error = $5
        WHERE event_id = $1 AND status = 'PENDING'`,
      [eventId, status, now, detail.entryId?.toString() ?? null, detail.error ?? null],
    );
  }

  /** Puts a claimed event back, due at `dueAt`, with the reason it did not apply. */
  async retryAt(eventId: string, dueAt: Date, error: string): Promise<void> {
    // Inputs: the event, when it is next due, why it failed. Locks: the row. Output: none.
    await this.pool.query(
      `UPDATE payments.stripe_events SET next_attempt_at = $2, last_error = $3 WHERE event_id = $1 AND status = 'PENDING'`,
      [eventId, dueAt, error],
    );
  }

  async stats(now: Date): Promise<InboxStats> {
    // Inputs: now. Locks: none. Output: pending and parked counts and the oldest pending
    // receipt (both partial indexes serve it).
    const { rows } = await this.pool.query<{ pending: string; parked: string; oldest: Date | null }>(
      `SELECT (SELECT count(*) FROM payments.stripe_events WHERE status = 'PENDING')::text AS pending,
              (SELECT count(*) FROM payments.stripe_events WHERE status = 'PARKED')::text AS parked,
              (SELECT min(received_at) FROM payments.stripe_events WHERE status = 'PENDING') AS oldest`,
    );
    const r = rows[0]!;
    return {
      pending: Number(r.pending),
      parked: Number(r.parked),
      oldestPendingMs: r.oldest === null ? 0 : Math.max(0, now.getTime() - r.oldest.getTime()),
    };
  }
}
