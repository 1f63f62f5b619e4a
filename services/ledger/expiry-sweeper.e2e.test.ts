import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../lib/clock.js';
import { Bucket } from './client/index.js';
import { startTestLedger, type TestLedger } from './testing/ledger-harness.js';

// The expiry sweeper's one write without an entry (marking spent, expired lots as done) goes
// through the write queue's batch like every command, under the users' row locks a batch takes,
// so it cannot race a batch that loaded the same lot.

describe('expiry sweeper', () => {
  const clock = new ManualClock('2026-11-24T12:00:00.000Z');
  let t: TestLedger;
  let admin: pg.Pool;
  beforeAll(async () => {
    t = await startTestLedger({ clock });
    admin = new pg.Pool({ connectionString: t.db.url, max: 2 });
    admin.on('error', () => {});
  });
  afterAll(async () => {
    await admin?.end();
    await t?.close();
  });

  it('waits for a batch holding the user, then marks the spent expired lot done', async () => {
    const expiresAt = new Date(clock.now().getTime() + 60_000);
    const { lotId } = await t.client.admin.grant({ idempotencyKey: 'g', userId: 'u-sweep', credits: 5n, bucket: Bucket.BUCKET_BONUS, expiresAt });
    await t.client.worker.consume({ idempotencyKey: 'c', userId: 'u-sweep', credits: 5n });
    clock.advance(60_000);
    // A batch in progress for this user, as far as locks go.
    const batch = await admin.connect();
    await batch.query('BEGIN');
    await batch.query(`SELECT id FROM users WHERE id = 'u-sweep' FOR UPDATE`);
    let done = false;
    const sweep = t.ledger.expirySweeper.sweepOnce().then((r) => {
      done = true;
      return r;
    });
    await new Promise((r) => setTimeout(r, 300));
    expect(done).toBe(false);
    const swept = async () =>
      (await admin.query<{ expiry_swept: boolean }>('SELECT expiry_swept FROM lots WHERE account_id = $1', [String(lotId)])).rows[0]!.expiry_swept;
    expect(await swept()).toBe(false);
    await batch.query('COMMIT');
    batch.release();
    expect(await sweep).toEqual({ examined: 1, expired: 0, finished: 1 });
    expect(await swept()).toBe(true);
    expect((await t.ledger.expirySweeper.sweepOnce()).examined).toBe(0);
    await t.expectInvariants();
  });

  it('passes that run at once mark a spent expired lot once, in the batch, and write no entry', async () => {
    const expiresAt = new Date(clock.now().getTime() + 60_000);
    const { lotId } = await t.client.admin.grant({ idempotencyKey: 'g2', userId: 'u-twice', credits: 3n, bucket: Bucket.BUCKET_BONUS, expiresAt });
    await t.client.worker.consume({ idempotencyKey: 'c2', userId: 'u-twice', credits: 3n });
    clock.advance(60_000);
    const head = async () => (await admin.query<{ seq: string }>('SELECT seq::text FROM journal_head')).rows[0]!.seq;
    const before = await head();
    const passes = await Promise.all(Array.from({ length: 4 }, () => t.ledger.expirySweeper.sweepOnce()));
    expect(passes.reduce((n, p) => n + p.finished, 0)).toBe(1);
    expect(passes.reduce((n, p) => n + p.expired, 0)).toBe(0);
    expect(await head()).toBe(before);
    const { rows } = await admin.query('SELECT expiry_swept FROM lots WHERE account_id = $1', [String(lotId)]);
    expect(rows).toEqual([{ expiry_swept: true }]);
    await t.expectInvariants();
  });
});
