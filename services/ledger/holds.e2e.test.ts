import { status } from '@grpc/grpc-js';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bucket, EntryKind, TransferKind } from '../generated/proto/credits/ledger/v1/ledger.js';
import { ManualClock } from '../lib/clock.js';
import { startTestLedger, type TestLedger } from './testing/ledger-harness.js';
import { errorReason } from './client/index.js';
import { sweeperActor } from './sweeper-commands.js';
import { settle, type Outcome } from './testing/call-outcome.js';

// Holds through real gRPC (ledger README §3 "Holds and expiry", §4 invariant 7, §6 deadlines):
// TTL expiry by the sweeper, leases with ExtendHold, two sweepers on one journal, and commands
// whose deadline passed before they ran.

// pg-pool's end() resolves before its connections have closed, so the DROP DATABASE … WITH (FORCE)
// that follows in the harness's close() can terminate a closing connection, and the pool re-emits
// that error; with no listener it would be an uncaught exception. Tests listen for it.
const quiet = <P extends { on(event: 'error', listener: () => void): unknown }>(pool: P): P => {
  pool.on('error', () => {});
  return pool;
};


describe('holds', () => {
  const clock = new ManualClock('2026-11-24T12:00:00.000Z');
  let t: TestLedger;
  let n = 0;
  const key = (p: string) => `${p}-${(n += 1)}`;

  const grant = (userId: string, credits: bigint) =>
    t.client.admin.grant({ idempotencyKey: key('grant'), userId, credits, bucket: Bucket.BUCKET_BONUS });
  const reserve = (userId: string, credits: bigint, ttlMs: bigint) =>
    t.client.worker.reserve({ idempotencyKey: key('reserve'), userId, credits, ttlMs });
  const balance = async (userId: string) => {
    const b = await t.client.worker.getBalance({ userId });
    return { balance: b.balance, held: b.held, available: b.available };
  };
  const holdRow = async (holdId: string) =>
    (await t.pool.query(`SELECT status, closed_seq::text, expires_at FROM holds WHERE id = $1`, [holdId])).rows[0] as {
      status: string;
      closed_seq: string | null;
      expires_at: Date;
    };

  beforeAll(async () => {
    t = await startTestLedger({ clock });
    quiet(t.pool);
  });
  afterAll(async () => {
    await t?.close();
  });

  it('TTL expiry: the sweeper writes a HOLD_TIMEOUT entry and frees the credits', async () => {
    const userId = 'h-ttl';
    await grant(userId, 50n);
    const r = await reserve(userId, 20n, 10_000n);
    expect(r.expiresAt).toEqual(new Date(clock.now().getTime() + 10_000));
    expect(await balance(userId)).toEqual({ balance: 50n, held: 20n, available: 30n });

    clock.advance(9_999);
    expect(await t.ledger.sweeper.sweepOnce()).toBe(0);
    expect((await holdRow(r.holdId)).status).toBe('OPEN');

    clock.advance(1);
    expect(await t.ledger.sweeper.sweepOnce()).toBe(1);
    const row = await holdRow(r.holdId);
    expect(row.status).toBe('EXPIRED');
    const { entry } = await t.client.auditor.getEntry({ entryId: BigInt(row.closed_seq!) });
    expect(entry?.kind).toBe(EntryKind.ENTRY_KIND_HOLD_TIMEOUT);
    expect(entry?.holdId).toBe(r.holdId);
    expect(entry?.userId).toBe(userId);
    expect(entry?.actor).toBe(sweeperActor);
    expect(entry?.transfers.map((x) => ({ kind: x.kind, amount: x.amount, pendingEntryId: x.pendingEntryId }))).toEqual([
      { kind: TransferKind.TRANSFER_KIND_VOID_PENDING, amount: 20n, pendingEntryId: r.entryId },
    ]);
    expect(await balance(userId)).toEqual({ balance: 50n, held: 0n, available: 50n });

    // Swept once only; the hold is gone for good.
    expect(await t.ledger.sweeper.sweepOnce()).toBe(0);
    const { rows } = await t.pool.query(`SELECT COUNT(*)::int AS n FROM entries WHERE kind = 'HOLD_TIMEOUT' AND hold_id = $1`, [r.holdId]);
    expect(rows[0].n).toBe(1);
    const late = await settle(t.client.worker.capture({ idempotencyKey: key('capture'), holdId: r.holdId, credits: 1n }));
    expect(late.ok ? 'OK' : [status[late.error.code], errorReason(late.error)]).toEqual(['FAILED_PRECONDITION', 'HOLD_EXPIRED']);
    // The freed credits can be spent.
    await t.client.worker.consume({ idempotencyKey: key('consume'), userId, credits: 50n });
    await t.expectInvariants();
  });

  it('ExtendHold moves the expiry and prevents the timeout', async () => {
    const userId = 'h-extend';
    await grant(userId, 30n);
    const r = await reserve(userId, 10n, 10_000n);
    clock.advance(8_000);
    const e = await t.client.worker.extendHold({ idempotencyKey: key('extend'), holdId: r.holdId, ttlMs: 10_000n });
    const newExpiry = new Date(clock.now().getTime() + 10_000);
    expect(e.expiresAt).toEqual(newExpiry);
    expect((await holdRow(r.holdId)).expires_at).toEqual(newExpiry);
    const extendEntry = (await t.client.auditor.getEntry({ entryId: e.entryId })).entry;
    expect(extendEntry?.kind).toBe(EntryKind.ENTRY_KIND_EXTEND_HOLD);
    expect(extendEntry?.transfers).toEqual([]);

    // Past the original expiry, before the new one: nothing to sweep, the hold still works.
    clock.advance(5_000);
    expect(await t.ledger.sweeper.sweepOnce()).toBe(0);
    expect((await holdRow(r.holdId)).status).toBe('OPEN');
    expect(await balance(userId)).toEqual({ balance: 30n, held: 10n, available: 20n });
    const c = await t.client.worker.capture({ idempotencyKey: key('capture'), holdId: r.holdId, credits: 7n });
    expect({ captured: c.capturedCredits, released: c.releasedCredits }).toEqual({ captured: 7n, released: 3n });
    expect(await balance(userId)).toEqual({ balance: 23n, held: 0n, available: 23n });
    clock.advance(60_000);
    expect(await t.ledger.sweeper.sweepOnce()).toBe(0);
    await t.expectInvariants();
  });

  it('an extended hold left alone times out at its new expiry, not before', async () => {
    const userId = 'h-extend-lapse';
    await grant(userId, 10n);
    const r = await reserve(userId, 4n, 5_000n);
    clock.advance(4_000);
    await t.client.worker.extendHold({ idempotencyKey: key('extend'), holdId: r.holdId, ttlMs: 20_000n });
    clock.advance(19_999);
    expect(await t.ledger.sweeper.sweepOnce()).toBe(0);
    clock.advance(1);
    expect(await t.ledger.sweeper.sweepOnce()).toBe(1);
    expect((await holdRow(r.holdId)).status).toBe('EXPIRED');
    // A lapsed hold cannot be extended back to life.
    const again = await settle(t.client.worker.extendHold({ idempotencyKey: key('extend'), holdId: r.holdId, ttlMs: 20_000n }));
    expect(again.ok ? 'OK' : [status[again.error.code], errorReason(again.error)]).toEqual(['FAILED_PRECONDITION', 'HOLD_EXPIRED']);
    expect(await balance(userId)).toEqual({ balance: 10n, held: 0n, available: 10n });
    await t.expectInvariants();
  });

  it('ExtendHold cannot keep a hold alive past its lifetime: HOLD_LIFETIME_EXCEEDED, then it times out', async () => {
    const userId = 'h-lifetime';
    const lifetimeMs = t.options.holdLifetimeMsMax;
    // A lot that expires while held: without a bound, extending would keep it capturable forever.
    await t.client.admin.grant({
      idempotencyKey: key('grant'),
      userId,
      credits: 10n,
      bucket: Bucket.BUCKET_BONUS,
      expiresAt: new Date(clock.now().getTime() + 60_000),
    });
    const r = await reserve(userId, 10n, 3_600_000n);
    const reservedAtMs = clock.now().getTime();
    // Extend every half hour, as a worker's lease would, until the lifetime is reached.
    let extensions = 0;
    for (;;) {
      clock.advance(1_800_000);
      const o = await settle(t.client.worker.extendHold({ idempotencyKey: key('extend'), holdId: r.holdId, ttlMs: 3_600_000n }));
      if (!o.ok) {
        expect([status[o.error.code], errorReason(o.error)]).toEqual(['FAILED_PRECONDITION', 'HOLD_LIFETIME_EXCEEDED']);
        expect(o.error.details).toMatch(new RegExp(`may live until ${new Date(reservedAtMs + lifetimeMs).toISOString()}`));
        break;
      }
      extensions += 1;
      expect(o.value.expiresAt!.getTime()).toBeLessThanOrEqual(reservedAtMs + lifetimeMs);
      expect(extensions).toBeLessThan(100);
    }
    // Every extension that fit was granted: the refusal came within one TTL of the lifetime's end.
    expect(clock.now().getTime() + 3_600_000).toBeGreaterThan(reservedAtMs + lifetimeMs);
    expect(extensions).toBe(Math.floor((lifetimeMs - 3_600_000) / 1_800_000));
    // A shorter extension that still fits is accepted; then the hold lapses and is voided.
    const remainingMs = reservedAtMs + lifetimeMs - clock.now().getTime();
    if (remainingMs >= 1_000) {
      await t.client.worker.extendHold({ idempotencyKey: key('extend'), holdId: r.holdId, ttlMs: BigInt(remainingMs) });
    }
    clock.set(new Date(reservedAtMs + lifetimeMs));
    expect(await t.ledger.sweeper.sweepOnce()).toBe(1);
    const late = await settle(t.client.worker.capture({ idempotencyKey: key('capture'), holdId: r.holdId, credits: 1n }));
    expect(late.ok ? 'OK' : errorReason(late.error)).toBe('HOLD_EXPIRED');
    await t.ledger.expirySweeper.sweepOnce();
    expect(await balance(userId)).toEqual({ balance: 0n, held: 0n, available: 0n });
    await t.expectInvariants();
  });

  describe('two ledgers on one database', () => {
    let t2: TestLedger;
    beforeAll(async () => {
      t2 = await startTestLedger({ db: t.db, clock });
      quiet(t2.pool);
    });
    afterAll(async () => {
      await t2?.close();
    });

    it('concurrent sweepOnce on both ledgers writes one timeout per hold', async () => {
      const users = ['h-two-a', 'h-two-b', 'h-two-c'];
      for (const u of users) await grant(u, 100n);
      const holdIds: string[] = [];
      for (let i = 0; i < 30; i += 1) holdIds.push((await reserve(users[i % users.length]!, 3n, 2_000n)).holdId);
      clock.advance(2_000);
      let voided = 0;
      for (let round = 0; round < 3; round += 1) {
        const counts = await Promise.all([
          t.ledger.sweeper.sweepOnce(),
          t2.ledger.sweeper.sweepOnce(),
          t.ledger.sweeper.sweepOnce(),
          t2.ledger.sweeper.sweepOnce(),
        ]);
        voided += counts.reduce((a, b) => a + b, 0);
      }
      expect(voided).toBe(30);
      const { rows } = await t.pool.query<{ hold_id: string; n: number }>(
        `SELECT h.id::text AS hold_id, COUNT(e.seq)::int AS n
           FROM holds h LEFT JOIN entries e ON e.hold_id = h.id AND e.kind = 'HOLD_TIMEOUT'
          WHERE h.id = ANY($1::uuid[]) GROUP BY h.id`,
        [holdIds],
      );
      expect(rows.length).toBe(30);
      expect(rows.filter((r) => r.n !== 1)).toEqual([]);
      for (const u of users) expect(await balance(u)).toEqual({ balance: 100n, held: 0n, available: 100n });
      await t.expectInvariants();
    });

    it('both ledgers with their sweeper timers running write one timeout per hold', async () => {
      // Two more ledgers whose sweepers run on their own timers (period 50 ms).
      const s1 = await startTestLedger({ db: t.db, clock, sweeper: true });
      const s2 = await startTestLedger({ db: t.db, clock, sweeper: true });
      quiet(s1.pool);
      quiet(s2.pool);
      try {
        const userId = 'h-timers';
        await grant(userId, 200n);
        const holdIds: string[] = [];
        for (let i = 0; i < 40; i += 1) holdIds.push((await reserve(userId, 5n, 3_000n)).holdId);
        clock.advance(3_000);
        let open = holdIds.length;
        for (let i = 0; i < 200 && open > 0; i += 1) {
          await new Promise((r) => setTimeout(r, 25));
          const { rows } = await t.pool.query(`SELECT COUNT(*)::int AS n FROM holds WHERE id = ANY($1::uuid[]) AND status = 'OPEN'`, [holdIds]);
          open = rows[0].n;
        }
        expect(open).toBe(0);
        // Let any sweep that was already in flight finish before counting.
        await s1.ledger.sweeper.stop();
        await s2.ledger.sweeper.stop();
        const { rows } = await t.pool.query<{ n: number; holds: number }>(
          `SELECT COUNT(*)::int AS n, COUNT(DISTINCT hold_id)::int AS holds FROM entries WHERE kind = 'HOLD_TIMEOUT' AND hold_id = ANY($1::uuid[])`,
          [holdIds],
        );
        expect(rows[0]).toEqual({ n: 40, holds: 40 });
        const actors = await t.pool.query(`SELECT DISTINCT actor FROM entries WHERE kind = 'HOLD_TIMEOUT'`);
        expect(actors.rows.map((r) => r.actor)).toEqual([sweeperActor]);
        expect(await balance(userId)).toEqual({ balance: 200n, held: 0n, available: 200n });
      } finally {
        await s1.close();
        await s2.close();
      }
      await t.expectInvariants();
    });
  });

  describe('deadlines', () => {
    it('a command whose deadline passes while it waits in the queue is not applied', async () => {
      const userId = 'h-deadline';
      await grant(userId, 10n);
      const before = await balance(userId);
      // Stall the write path: hold the journal head lock from outside the ledger.
      const blocker = new pg.Client({ connectionString: t.db.url });
      await blocker.connect();
      let stalled: Outcome<unknown>;
      let patient: Outcome<{ entryId: bigint; replayed: boolean }>;
      const consumeKey = key('late-consume');
      const patientKey = key('patient-consume');
      try {
        await blocker.query('BEGIN');
        await blocker.query('SELECT seq FROM journal_head WHERE id = 1 FOR UPDATE');
        const startedAt = Date.now();
        const lateCall = settle(t.client.worker.consume({ idempotencyKey: consumeKey, userId, credits: 3n }, { timeoutMs: 300 }));
        // Held by the same blocked batch or the next one; its deadline is generous.
        await new Promise((r) => setTimeout(r, 20));
        const patientCall = settle(t.client.worker.consume({ idempotencyKey: patientKey, userId, credits: 2n }, { timeoutMs: 20_000 }));
        stalled = await lateCall;
        expect(Date.now() - startedAt).toBeGreaterThanOrEqual(250);
        // The caller has given up; only now does the batch get the head.
        await new Promise((r) => setTimeout(r, 200));
        await blocker.query('ROLLBACK');
        patient = await patientCall;
      } finally {
        await blocker.end();
      }
      expect(stalled.ok ? 'OK' : status[stalled.error.code]).toBe('DEADLINE_EXCEEDED');
      expect(patient.ok ? patient.value.replayed : status[patient.error.code]).toBe(false);
      const { rows } = await t.pool.query('SELECT idempotency_key FROM entries WHERE idempotency_key = ANY($1::text[])', [[consumeKey, patientKey]]);
      expect(rows.map((r) => r.idempotency_key)).toEqual([patientKey]);
      expect(await balance(userId)).toEqual({ ...before, balance: before.balance - 2n, available: before.available - 2n });
      // Nothing was stored under the late key: a retry is applied now, once.
      const retry = await t.client.worker.consume({ idempotencyKey: consumeKey, userId, credits: 3n });
      expect(retry.replayed).toBe(false);
      expect((await balance(userId)).balance).toBe(before.balance - 5n);
      await t.expectInvariants();
    });

    it('a command sent with a deadline already passed is not applied', async () => {
      const userId = 'h-deadline-past';
      await grant(userId, 10n);
      const k = key('expired-deadline');
      const o = await settle(t.client.worker.consume({ idempotencyKey: k, userId, credits: 3n }, { timeoutMs: -1_000 }));
      expect(o.ok ? 'OK' : status[o.error.code]).toBe('DEADLINE_EXCEEDED');
      // Give a server that wrongly accepted it the time to write it.
      await new Promise((r) => setTimeout(r, 200));
      const { rows } = await t.pool.query('SELECT COUNT(*)::int AS n FROM entries WHERE idempotency_key = $1', [k]);
      expect(rows[0].n).toBe(0);
      expect((await balance(userId)).balance).toBe(10n);
      await t.expectInvariants();
    });
  });
});
