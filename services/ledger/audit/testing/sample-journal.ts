import pg from 'pg';
import { Bucket, RefundReason } from '../../client/index.js';
import { ManualClock } from '../../../lib/clock.js';
import { adminUrl, createTestDatabase, databaseUrl, type TestDatabase } from '../../../testing/test-db.js';
import { startTestLedger } from '../../testing/ledger-harness.js';

/**
 * A journal with every command of the ledger in it, built through the public gRPC API by each
 * role (lifecycle included: renewals, expiry, hold timeout, refunds, a reversal), on a database
 * of its own that outlives the ledger, so tests can copy it and tamper with the copies.
 */
export interface SampleJournal {
  db: TestDatabase;
  /** Sequence numbers of notable entries, for tampering and assertions. */
  seq: {
    grant: bigint;
    purchase: bigint;
    consume: bigint;
    capture: bigint;
    renewal: bigint;
    refund: bigint;
    last: bigint;
  };
  /** The lot bought by the purchase (external_ref `pi_sample_1`). */
  purchasedLot: bigint;
  /** A lot granted with an expiry, still live at the end. */
  expiringLot: bigint;
  /** Upstream predictions captured or consumed, with their cost in micros. */
  upstream: { predictionId: string; amountMicros: bigint; model: string; seq: bigint }[];
  /** The ledger clock's time at the end. */
  endedAt: Date;
}

const day = 86_400_000;

export async function buildSampleJournal(): Promise<SampleJournal> {
  const db = await createTestDatabase();
  const clock = new ManualClock('2026-11-01T09:00:00.000Z');
  const t = await startTestLedger({ db, clock });
  try {
    let n = 0;
    const key = (p: string) => `sample-${p}-${(n += 1)}`;
    const { admin, payments, worker } = t.client;
    const at = (ms: number) => new Date(clock.now().getTime() + ms);

    const grant = await admin.grant({
      idempotencyKey: key('grant'), userId: 'alice', credits: 100n, bucket: Bucket.BUCKET_BONUS, expiresAt: at(60 * day), priority: 2,
      metadata: { reason: 'welcome' },
    });
    const shortGrant = await admin.grant({
      idempotencyKey: key('grant'), userId: 'alice', credits: 7n, bucket: Bucket.BUCKET_BONUS, expiresAt: at(2 * day),
    });
    const purchase = await payments.purchase({
      idempotencyKey: 'stripe:cs:cs_sample_1', userId: 'alice', credits: 500n, bucket: Bucket.BUCKET_PURCHASED,
      amountMicros: 299_990_000n, currency: 'USD', externalRef: 'pi_sample_1',
      metadata: { stripe_checkout_session: 'cs_sample_1', package_id: 'pack-500' },
    });
    await payments.purchase({
      idempotencyKey: 'stripe:cs:cs_sample_2', userId: 'bob', credits: 100n, bucket: Bucket.BUCKET_PURCHASED,
      amountMicros: 9_990_000n, currency: 'USD', externalRef: 'pi_sample_2',
      metadata: { stripe_checkout_session: 'cs_sample_2', package_id: 'pack-100' },
    });
    const periodStart = clock.now();
    const renewal = await payments.renewSubscription({
      idempotencyKey: 'stripe:in:in_sample_1', userId: 'carol', plan: 'pro', periodStart, periodEnd: at(30 * day),
      credits: 1_000n, amountMicros: 20_000_000n, currency: 'USD', externalRef: 'in_sample_1',
      metadata: { stripe_invoice: 'in_sample_1' },
    });

    const upstream: SampleJournal['upstream'] = [];
    clock.advance(60_000);
    const consume = await worker.consume({
      idempotencyKey: key('consume'), userId: 'alice', credits: 120n,
      upstream: { amountMicros: 30_000n, currency: 'USD', requestId: 'pred_sample_1', model: 'upscaler-4x' },
      metadata: { request_id: 'job-1' },
    });
    upstream.push({ predictionId: 'pred_sample_1', amountMicros: 30_000n, model: 'upscaler-4x', seq: consume.entryId });

    const hold = await worker.reserve({ idempotencyKey: key('reserve'), userId: 'carol', credits: 40n, ttlMs: 60_000n });
    await worker.extendHold({ idempotencyKey: key('extend'), holdId: hold.holdId, ttlMs: 120_000n });
    clock.advance(30_000);
    const capture = await worker.capture({
      idempotencyKey: key('capture'), holdId: hold.holdId, credits: 25n,
      upstream: { amountMicros: 12_500n, currency: 'USD', requestId: 'pred_sample_2', model: 'face-restore' },
    });
    upstream.push({ predictionId: 'pred_sample_2', amountMicros: 12_500n, model: 'face-restore', seq: capture.entryId });

    const released = await worker.reserve({ idempotencyKey: key('reserve'), userId: 'bob', credits: 10n });
    await worker.release({ idempotencyKey: key('release'), holdId: released.holdId });
    // A hold left to time out: the sweeper journals HOLD_TIMEOUT.
    await worker.reserve({ idempotencyKey: key('reserve'), userId: 'bob', credits: 5n, ttlMs: 1_000n });
    clock.advance(5_000);
    await t.ledger.sweeper.sweepOnce();

    const refund = await payments.refund({
      idempotencyKey: 'stripe:ch:ch_sample_2:refunded:500', externalRef: 'pi_sample_2', amountMicros: 5_000_000n,
      reason: RefundReason.REFUND_REASON_REFUND, metadata: { stripe_charge: 'ch_sample_2' },
    });
    const reversible = await worker.consume({ idempotencyKey: key('consume'), userId: 'bob', credits: 2n });
    await admin.reverse({ idempotencyKey: key('reverse'), entryId: reversible.entryId, reason: 'duplicate job' });

    // Lifecycle: the short grant expires (sweeper), and carol's subscription renews.
    clock.advance(3 * day);
    await t.ledger.expirySweeper.sweepOnce();
    await payments.renewSubscription({
      idempotencyKey: 'stripe:in:in_sample_2', userId: 'carol', plan: 'pro', periodStart: new Date(periodStart.getTime() + 30 * day),
      periodEnd: new Date(periodStart.getTime() + 60 * day), credits: 1_000n, amountMicros: 20_000_000n, currency: 'USD',
      externalRef: 'in_sample_2', metadata: { stripe_invoice: 'in_sample_2' },
    });
    clock.advance(28 * day);
    await t.ledger.expirySweeper.sweepOnce();
    const late = await worker.consume({
      idempotencyKey: key('consume'), userId: 'carol', credits: 50n,
      upstream: { amountMicros: 15_000n, currency: 'USD', requestId: 'pred_sample_3', model: 'upscaler-4x' },
    });
    upstream.push({ predictionId: 'pred_sample_3', amountMicros: 15_000n, model: 'upscaler-4x', seq: late.entryId });
    void shortGrant;
    // A hold still open at the end.
    await worker.reserve({ idempotencyKey: key('reserve'), userId: 'alice', credits: 3n, ttlMs: 3_600_000n });

    await t.expectInvariants();
    const last = BigInt((await t.pool.query<{ seq: string }>('SELECT seq::text FROM journal_head')).rows[0]!.seq);
    return {
      db,
      seq: {
        grant: grant.entryId, purchase: purchase.entryId, consume: consume.entryId, capture: capture.entryId,
        renewal: renewal.entryId, refund: refund.entryId, last,
      },
      purchasedLot: purchase.lotId,
      expiringLot: grant.lotId,
      upstream,
      endedAt: clock.now(),
    };
  } finally {
    await t.close();
  }
}

/**
 * A fresh copy of `db` (PostgreSQL's CREATE DATABASE … TEMPLATE), for one tamper. Nothing may be
 * connected to `db` while it is copied.
 */
export async function copyDatabase(db: TestDatabase, suffix: string): Promise<TestDatabase> {
  const source = db.name;
  const name = `${source}_${suffix}`.slice(0, 63);
  const admin = async (sql: string) => {
    const c = new pg.Client({ connectionString: adminUrl });
    await c.connect();
    try {
      await c.query(sql);
    } finally {
      await c.end();
    }
  };
  await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin(`CREATE DATABASE ${name} TEMPLATE ${source}`);
  return { name, url: databaseUrl(name), drop: () => admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) };
}

/** Runs `sql` as the superuser with the journal's triggers disabled: what an attacker with owner rights can do. */
export async function tamper(url: string, sql: string, values: unknown[] = []): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await c.query('ALTER TABLE entries DISABLE TRIGGER ALL');
    await c.query('ALTER TABLE transfers DISABLE TRIGGER ALL');
    await c.query(sql, values);
  } finally {
    await c.end();
  }
}
