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
  /** The delivery's trace context (W3C traceparent), null when tracing is off. */
  traceparent?: string | null;
}

export interface ClaimedEvent {
  eventId: string;
  type: string;
  objectId: string;
  payload: unknown;
  attempts: number;
  receivedAt: Date;
  traceparent: string | null;
}

interface Finished {
  eventId: string;
  status: 'APPLIED' | 'IGNORED' | 'PARKED';
  entryId?: bigint;
  error?: string;
}

interface Later {
  eventId: string;
  status: 'PENDING';
  dueAt: Date;
  error: string;
}

/** What an apply pass decided for one claimed event. */
export type Outcome = Finished | Later;

export interface InboxStats {
  pending: number;
  parked: number;
  /** Age of the oldest pending event, 0 when none. */
  oldestPendingMs: number;
}

export class InboxStore {
  constructor(private readonly pool: pg.Pool) {}

  /**
   * Stores verified events, each once. `status` is PENDING for types the applier handles,
   * IGNORED for the rest (recorded, never applied). Returns the ids that were inserted now;
   * an id stored before (or twice in `events`) is inserted once.
   */
  async storeMany(events: readonly { event: IncomingEvent; status: 'PENDING' | 'IGNORED' }[], now: Date): Promise<Set<string>> {
    if (events.length === 0) return new Set();
    // Inputs: parallel arrays of the events' columns, the receipt time. Locks: the new rows
    // (the primary key on event_id makes a duplicate delivery a no-op, also when several
    // arrive at once or in one batch). Output: the event ids inserted by this statement.
    const result = await this.pool.query<{ event_id: string }>(
      `INSERT INTO payments.stripe_events
         (event_id, type, object_id, livemode, api_version, stripe_created_at, received_at, payload,
          status, next_attempt_at, finished_at, traceparent)
       SELECT e.event_id, e.type, e.object_id, e.livemode, e.api_version, e.created_at, $9, e.payload::jsonb,
              e.status, $9, CASE WHEN e.status = 'PENDING' THEN NULL ELSE $9::timestamptz END, e.traceparent
         FROM unnest($1::text[], $2::text[], $3::text[], $4::boolean[], $5::text[], $6::timestamptz[], $7::text[], $8::text[], $10::text[])
           AS e(event_id, type, object_id, livemode, api_version, created_at, payload, status, traceparent)
       ON CONFLICT (event_id) DO NOTHING
       RETURNING event_id`,
      [
        events.map((x) => x.event.eventId),
        events.map((x) => x.event.type),
        events.map((x) => x.event.objectId),
        events.map((x) => x.event.livemode),
        events.map((x) => x.event.apiVersion),
        events.map((x) => x.event.createdAt),
        events.map((x) => x.event.payload),
        events.map((x) => x.status),
        now,
        events.map((x) => x.event.traceparent ?? null),
      ],
    );
    return new Set(result.rows.map((r) => r.event_id));
  }

  /**
   * Claims up to `limit` due events for one apply pass: each claim counts an attempt and moves
   * the event's due time a lease ahead, so a process that dies mid-apply leaves the event to be
   * claimed again once the lease is over (the ledger's idempotency keys make that safe).
   */
  async claimDue(now: Date, limit: number, leaseMs: number): Promise<ClaimedEvent[]> {
    // Inputs: now, the batch bound, the lease. Locks: the claimed rows, briefly (SKIP LOCKED:
    // concurrent appliers take disjoint sets). Output: the claimed events, oldest due first.
    const result = await this.pool.query<{ event_id: string; type: string; object_id: string; payload: unknown; attempts: number; received_at: Date; due: Date; traceparent: string | null }>(
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
       RETURNING e.event_id, e.type, e.object_id, e.payload, e.attempts, e.received_at, due.next_attempt_at AS due, e.traceparent`,
      [now, limit, leaseMs],
    );
    return result.rows
      .sort((a, b) => a.due.getTime() - b.due.getTime())
      .map((r) => ({ eventId: r.event_id, type: r.type, objectId: r.object_id, payload: r.payload, attempts: r.attempts, receivedAt: r.received_at, traceparent: r.traceparent }));
  }

  /**
   * Records the outcomes of one apply pass: finished events (applied, ignored, parked) and
   * events put back until a later time. Only PENDING rows change: a finished event stays as it
   * ended.
   */
  async record(outcomes: readonly Outcome[], now: Date): Promise<void> {
    const finished = outcomes.filter((o): o is Finished => o.status !== 'PENDING');
    const later = outcomes.filter((o): o is Later => o.status === 'PENDING');
    const statements: Promise<unknown>[] = [];
    if (finished.length > 0) {
      // Inputs: the events, their final status, ledger entry and reason; the time. Locks: those
      // rows. Output: none.
      statements.push(
        this.pool.query(
          `UPDATE payments.stripe_events AS e
              SET status = o.status, finished_at = $5, ledger_entry_id = o.entry_id, last_error = o.error
             FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[]) AS o(event_id, status, entry_id, error)
            WHERE e.event_id = o.event_id AND e.status = 'PENDING'`,
          [finished.map((o) => o.eventId), finished.map((o) => o.status), finished.map((o) => o.entryId?.toString() ?? null), finished.map((o) => o.error ?? null), now],
        ),
      );
    }
    if (later.length > 0) {
      // Inputs: the events, when each is next due, why it did not apply. Locks: those rows.
      // Output: none.
      statements.push(
        this.pool.query(
          `UPDATE payments.stripe_events AS e SET next_attempt_at = o.due_at, last_error = o.error
             FROM unnest($1::text[], $2::timestamptz[], $3::text[]) AS o(event_id, due_at, error)
            WHERE e.event_id = o.event_id AND e.status = 'PENDING'`,
          [later.map((o) => o.eventId), later.map((o) => o.dueAt), later.map((o) => o.error)],
        ),
      );
    }
    await Promise.all(statements);
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
