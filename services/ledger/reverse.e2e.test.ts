import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bucket, EntryKind, TransferKind, type Entry } from '../generated/proto/credits/ledger/v1/ledger.js';
import { ManualClock } from '../lib/clock.js';
import { startTestLedger, type TestLedger } from './testing/ledger-harness.js';
import { settle, type Outcome, refusal } from './testing/call-outcome.js';

// Reverse (ledger README §3, §4 "a correction is a new reversing entry"): an admin-only mirror of an
// earlier entry's posted effect, linked both ways, at most once; never of an open reservation,
// never overdrawing a lot whose credits were spent since.

/** An entry's posted movements, as (from, to, amount, unit). */
function moves(entry: Entry) {
  return entry.transfers.map((x) => ({ kind: x.kind, from: x.debitAccountCode, to: x.creditAccountCode, amount: x.amount, unit: x.unit }));
}
/** What a mirror of `entry` posts: its POSTED and POST_PENDING legs, swapped, as POSTED. */
function mirrorOf(entry: Entry) {
  return entry.transfers
    .filter((x) => x.kind === TransferKind.TRANSFER_KIND_POSTED || x.kind === TransferKind.TRANSFER_KIND_POST_PENDING)
    .map((x) => ({ kind: TransferKind.TRANSFER_KIND_POSTED, from: x.creditAccountCode, to: x.debitAccountCode, amount: x.amount, unit: x.unit }));
}

describe('reverse', () => {
  const clock = new ManualClock('2026-11-24T12:00:00.000Z');
  let t: TestLedger;
  let n = 0;
  const key = (p: string) => `${p}-${(n += 1)}`;

  beforeAll(async () => {
    t = await startTestLedger({ clock });
  });
  afterAll(async () => {
    await t?.close();
  });

  const reverse = (entryId: bigint, idempotencyKey = key('rev'), reason = 'operator correction') =>
    t.client.admin.reverse({ idempotencyKey, entryId, reason });
  const entry = async (entryId: bigint) => (await t.client.auditor.getEntry({ entryId })).entry!;
  const head = async () => BigInt((await t.pool.query<{ seq: string }>('SELECT seq::text FROM journal_head')).rows[0]!.seq);
  const totals = async (userId: string) => {
    const b = await t.client.auditor.getBalance({ userId });
    return { balance: b.balance, held: b.held, available: b.available };
  };

  it('reverses an unspent grant: a mirror entry linked both ways, once', async () => {
    const g = await t.client.admin.grant({ idempotencyKey: key('g'), userId: 'rg', credits: 50n, bucket: Bucket.BUCKET_BONUS });
    const original = await entry(g.entryId);
    const revKey = key('rev');
    const r = await reverse(g.entryId, revKey, 'granted to the wrong user');
    expect(r).toEqual({ entryId: g.entryId + 1n, replayed: false });

    const reversal = await entry(r.entryId);
    expect(reversal.kind).toBe(EntryKind.ENTRY_KIND_REVERSE);
    expect(reversal.userId).toBe('rg');
    expect(reversal.actor).toBe('admin-svc');
    expect(reversal.reversesEntryId).toBe(g.entryId);
    expect(reversal.reversedByEntryId).toBe(0n);
    expect(reversal.metadata).toMatchObject({ reverses_entry_id: g.entryId.toString(), reversed_kind: 'GRANT', reason: 'granted to the wrong user' });
    expect(moves(reversal)).toEqual(mirrorOf(original));
    expect(moves(reversal)).toEqual([
      { kind: TransferKind.TRANSFER_KIND_POSTED, from: `user:rg:lot:${g.lotId}`, to: 'platform.credits_issued', amount: 50n, unit: 'CREDIT' },
    ]);
    const after = await entry(g.entryId);
    expect(after.reversedByEntryId).toBe(r.entryId);
    expect(after.reversesEntryId).toBe(0n);
    expect(await totals('rg')).toEqual({ balance: 0n, held: 0n, available: 0n });

    // Replay: the stored answer. Another key: ALREADY_REVERSED. A reversal itself: NOT_REVERSIBLE.
    const h = await head();
    expect(await reverse(g.entryId, revKey, 'granted to the wrong user')).toEqual({ ...r, replayed: true });
    expect(refusal(await settle(reverse(g.entryId)))).toEqual({ code: status.FAILED_PRECONDITION, reason: 'ALREADY_REVERSED' });
    expect(refusal(await settle(reverse(r.entryId)))).toEqual({ code: status.FAILED_PRECONDITION, reason: 'NOT_REVERSIBLE' });
    expect(await head()).toBe(h);

    // Two reversals of one entry racing under different keys: one is written.
    const g2 = await t.client.admin.grant({ idempotencyKey: key('g'), userId: 'rg', credits: 5n, bucket: Bucket.BUCKET_BONUS });
    const race = await Promise.all([settle(reverse(g2.entryId)), settle(reverse(g2.entryId))]);
    expect(race.filter((o) => o.ok)).toHaveLength(1);
    expect(race.filter((o) => !o.ok).map((o) => refusal(o))).toEqual([{ code: status.FAILED_PRECONDITION, reason: 'ALREADY_REVERSED' }]);
    const { rows } = await t.pool.query<{ n: number }>(`SELECT COUNT(*)::int AS n FROM entries WHERE reverses_seq = $1`, [g2.entryId.toString()]);
    expect(rows[0]!.n).toBe(1);
    await t.expectInvariants();
  });

  it('reverses a consume: credits back in their lot, revenue and upstream cost un-booked', async () => {
    const p = await t.client.payments.purchase({
      idempotencyKey: key('p'), userId: 'rc', credits: 100n, bucket: Bucket.BUCKET_PURCHASED,
      amountMicros: 10_000_000n, currency: 'USD', externalRef: 'cs_rc',
    });
    const c = await t.client.worker.consume({
      idempotencyKey: key('c'), userId: 'rc', credits: 30n,
      upstream: { amountMicros: 80_000n, currency: 'USD', requestId: 'pred_rc', model: 'upscale' },
    });
    const consumed = await entry(c.entryId);
    expect(moves(consumed)).toEqual([
      { kind: TransferKind.TRANSFER_KIND_POSTED, from: `user:rc:lot:${p.lotId}`, to: 'platform.credits_consumed', amount: 30n, unit: 'CREDIT' },
      { kind: TransferKind.TRANSFER_KIND_POSTED, from: `user:rc:lot:${p.lotId}:deferred`, to: 'revenue.recognized.USD', amount: 3_000_000n, unit: 'USD' },
      { kind: TransferKind.TRANSFER_KIND_POSTED, from: 'upstream.wavespeed.cost.USD', to: 'upstream.wavespeed.payable.USD', amount: 80_000n, unit: 'USD' },
    ]);
    const r = await reverse(c.entryId);
    const reversal = await entry(r.entryId);
    expect(moves(reversal)).toEqual(mirrorOf(consumed));
    expect(reversal.reversesEntryId).toBe(c.entryId);
    expect((await entry(c.entryId)).reversedByEntryId).toBe(r.entryId);
    expect(reversal.metadata).toMatchObject({ reversed_kind: 'CONSUME' });

    const b = await t.client.auditor.getBalance({ userId: 'rc' });
    expect({ balance: b.balance, available: b.available }).toEqual({ balance: 100n, available: 100n });
    expect(b.lots.map((l) => ({ lotId: l.lotId, balance: l.balance, deferred: l.deferredMicros }))).toEqual([
      { lotId: p.lotId, balance: 100n, deferred: 10_000_000n },
    ]);
    // Net effect of consume + reversal on every account: nothing.
    const net = await t.pool.query<{ code: string; net: string }>(
      `WITH m AS (
         SELECT debit_account_id AS id, -amount AS v FROM transfers WHERE entry_seq IN ($1, $2)
         UNION ALL SELECT credit_account_id, amount FROM transfers WHERE entry_seq IN ($1, $2))
       SELECT a.code, SUM(m.v)::text AS net FROM m JOIN accounts a ON a.id = m.id GROUP BY a.code HAVING SUM(m.v) <> 0`,
      [c.entryId.toString(), r.entryId.toString()],
    );
    expect(net.rows).toEqual([]);
    // The credits are spendable again, from the same lot.
    expect((await t.client.worker.consume({ idempotencyKey: key('c'), userId: 'rc', credits: 100n })).allocations).toEqual([
      { lotId: p.lotId, credits: 100n },
    ]);
    await t.expectInvariants();
  });

  it('reservations: an open one is HOLD_OPEN; a closed one moved nothing (NOT_REVERSIBLE); its capture is reversible', async () => {
    await t.client.admin.grant({ idempotencyKey: key('g'), userId: 'rr', credits: 40n, bucket: Bucket.BUCKET_BONUS });
    const hold = await t.client.worker.reserve({ idempotencyKey: key('r'), userId: 'rr', credits: 25n, ttlMs: 60_000n });
    const h = await head();
    expect(refusal(await settle(reverse(hold.entryId)))).toEqual({ code: status.FAILED_PRECONDITION, reason: 'HOLD_OPEN' });
    expect(await head()).toBe(h);
    expect(await totals('rr')).toEqual({ balance: 40n, held: 25n, available: 15n });

    const cap = await t.client.worker.capture({ idempotencyKey: key('cap'), holdId: hold.holdId, credits: 10n });
    expect(refusal(await settle(reverse(hold.entryId)))).toEqual({ code: status.FAILED_PRECONDITION, reason: 'NOT_REVERSIBLE' });
    const r = await reverse(cap.entryId);
    const captured = await entry(cap.entryId);
    expect(moves(await entry(r.entryId))).toEqual(mirrorOf(captured));
    expect(mirrorOf(captured)).toHaveLength(1); // the POST_PENDING leg; the void moved nothing
    expect(await totals('rr')).toEqual({ balance: 40n, held: 0n, available: 40n });

    const other = await t.client.worker.reserve({ idempotencyKey: key('r'), userId: 'rr', credits: 5n, ttlMs: 60_000n });
    const rel = await t.client.worker.release({ idempotencyKey: key('rel'), holdId: other.holdId });
    expect(refusal(await settle(reverse(rel.entryId)))).toEqual({ code: status.FAILED_PRECONDITION, reason: 'NOT_REVERSIBLE' });
    expect(refusal(await settle(reverse(other.entryId)))).toEqual({ code: status.FAILED_PRECONDITION, reason: 'NOT_REVERSIBLE' });
    await t.expectInvariants();
  });

  it('a grant whose credits were spent (or are held) since is INSUFFICIENT_CREDITS, and nothing is written', async () => {
    const g = await t.client.admin.grant({ idempotencyKey: key('g'), userId: 'rs', credits: 10n, bucket: Bucket.BUCKET_BONUS });
    await t.client.worker.consume({ idempotencyKey: key('c'), userId: 'rs', credits: 4n });
    const h = await head();
    expect(refusal(await settle(reverse(g.entryId)))).toEqual({ code: status.FAILED_PRECONDITION, reason: 'INSUFFICIENT_CREDITS' });
    expect(await head()).toBe(h);
    expect(await totals('rs')).toEqual({ balance: 6n, held: 0n, available: 6n });
    expect((await entry(g.entryId)).reversedByEntryId).toBe(0n);

    const g2 = await t.client.admin.grant({ idempotencyKey: key('g'), userId: 'rh', credits: 10n, bucket: Bucket.BUCKET_BONUS });
    const hold = await t.client.worker.reserve({ idempotencyKey: key('r'), userId: 'rh', credits: 1n, ttlMs: 60_000n });
    expect(refusal(await settle(reverse(g2.entryId)))).toEqual({ code: status.FAILED_PRECONDITION, reason: 'INSUFFICIENT_CREDITS' });
    // Once the hold is released, the whole grant can be taken back.
    await t.client.worker.release({ idempotencyKey: key('rel'), holdId: hold.holdId });
    await reverse(g2.entryId);
    expect(await totals('rh')).toEqual({ balance: 0n, held: 0n, available: 0n });
    await t.expectInvariants();
  });

  it('only admin may reverse: other roles are PERMISSION_DENIED; unknown entries NOT_FOUND; a reason is required', async () => {
    const g = await t.client.admin.grant({ idempotencyKey: key('g'), userId: 'rp', credits: 10n, bucket: Bucket.BUCKET_BONUS });
    const h = await head();
    for (const role of ['payments', 'worker', 'auditor'] as const) {
      const o = await settle(t.client[role].reverse({ idempotencyKey: key('rev'), entryId: g.entryId, reason: 'not mine to do' }));
      expect({ role, code: refusal(o).code }).toEqual({ role, code: status.PERMISSION_DENIED });
    }
    expect(refusal(await settle(reverse(h + 1000n))).code).toBe(status.NOT_FOUND);
    expect(refusal(await settle(reverse(g.entryId, key('rev'), '  '))).code).toBe(status.INVALID_ARGUMENT);
    expect(refusal(await settle(reverse(0n))).code).toBe(status.INVALID_ARGUMENT);
    expect(await head()).toBe(h);
    expect((await entry(g.entryId)).reversedByEntryId).toBe(0n);
    await t.expectInvariants();
  });

  it('credits a reversal gives back to a lot that has expired meanwhile do not stay there unexpirable', async () => {
    const t0 = clock.now().getTime();
    const expiresAt = new Date(t0 + 3_600_000);
    const g = await t.client.admin.grant({ idempotencyKey: key('g'), userId: 're', credits: 10n, bucket: Bucket.BUCKET_BONUS, expiresAt });
    const c = await t.client.worker.consume({ idempotencyKey: key('c'), userId: 're', credits: 4n });
    clock.set(expiresAt);
    await t.ledger.expirySweeper.sweepOnce();
    expect(await totals('re')).toEqual({ balance: 0n, held: 0n, available: 0n });

    // An operator reverses the consume after the lot expired (the job had in fact failed).
    const r = await settle(reverse(c.entryId));
    if (r.ok) {
      // The 4 credits went back to an expired lot: like credits a hold gives back after expiry
      // (ledger README §3), they must leave it — at once or at the next sweep — not sit there forever.
      clock.advance(1);
      await t.ledger.expirySweeper.sweepOnce();
      const b = await t.client.auditor.getBalance({ userId: 're' });
      const stranded = b.lots
        .filter((l) => l.expiresAt !== undefined && l.expiresAt.getTime() <= clock.now().getTime() && l.balance - l.held > 0n)
        .map((l) => ({ lotId: l.lotId, balance: l.balance }));
      expect(stranded).toEqual([]);
      expect(b.balance).toBe(0n);
    } else {
      // Refusing the reversal is an acceptable alternative.
      expect(refusal(r).code).toBe(status.FAILED_PRECONDITION);
    }
    expect(g.lotId).toBeGreaterThan(0n);
    await t.expectInvariants();
  });
});
