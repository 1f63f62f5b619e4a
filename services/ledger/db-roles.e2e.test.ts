import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../testing/test-db.js';
import { Bucket } from './client/index.js';
import { applyRoles, roleWarning } from './store/db-roles.js';
import { startTestLedger, type TestLedger } from './testing/ledger-harness.js';
import { createTestRoles, type TestRoles } from './testing/ledger-roles.js';

// The journal locked down by roles: the ledger runs as an app role that may append to the
// journal and read it, nothing more; the owner alone may alter the tables; the append-only
// triggers fire always, also for a superuser in replica mode.


async function failure(pool: pg.Pool, sql: string): Promise<string> {
  try {
    await pool.query(sql);
    return 'succeeded';
  } catch (error) {
    return (error as Error).message;
  }
}

describe('database roles', () => {
  let db: TestDatabase;
  let t: TestLedger;
  let asApp: pg.Pool;
  let asOwner: pg.Pool;
  let asSuper: pg.Pool;
  let roles: TestRoles;
  let urlAs: TestRoles['urlAs'];
  let owner: string;
  let app: string;
  beforeAll(async () => {
    db = await createTestDatabase();
    roles = await createTestRoles(db.url);
    ({ urlAs, owner, app } = roles);
    // Applying twice changes nothing and fails nothing (start-ups run it every time).
    await applyRoles(db.url, { owner, app });
    t = await startTestLedger({ db, connectVia: (url) => urlAs(app, url) });
    asApp = new pg.Pool({ connectionString: urlAs(app, db.url), max: 1 });
    asOwner = new pg.Pool({ connectionString: urlAs(owner, db.url), max: 1 });
    asSuper = new pg.Pool({ connectionString: db.url, max: 1 });
    for (const p of [asApp, asOwner, asSuper]) p.on('error', () => {});
  });
  afterAll(async () => {
    await t?.close();
    await Promise.all([asApp?.end(), asOwner?.end(), asSuper?.end()]);
    await db?.drop();
    await roles?.drop();
  });

  it('a ledger running as the app role does all its work, and says nothing about its role', async () => {
    await t.client.admin.grant({ idempotencyKey: 'g', userId: 'u-role', credits: 10n, bucket: Bucket.BUCKET_BONUS });
    const hold = await t.client.worker.reserve({ idempotencyKey: 'r', userId: 'u-role', credits: 3n });
    await t.client.worker.capture({ idempotencyKey: 'cap', holdId: hold.holdId, credits: 2n });
    await t.client.worker.consume({ idempotencyKey: 'c', userId: 'u-role', credits: 1n });
    await t.client.payments.purchase({
      idempotencyKey: 'p',
      userId: 'u-role',
      credits: 5n,
      bucket: Bucket.BUCKET_PURCHASED,
      amountMicros: 1_000_000n,
      currency: 'USD',
      externalRef: 'pi_role',
    });
    await t.ledger.expirySweeper.sweepOnce();
    expect((await t.client.auditor.listEntries({ userId: 'u-role' })).entries.length).toBe(5);
    expect(await roleWarning(asApp)).toBeNull();
    await t.expectInvariants();
  });

  it('the app role cannot UPDATE, DELETE or TRUNCATE the journal, nor switch its triggers off', async () => {
    for (const [table, column] of [['entries', 'actor'], ['transfers', 'amount']] as const) {
      expect(await failure(asApp, `UPDATE ${table} SET ${column} = ${column} WHERE false`)).toMatch(/permission denied/);
      expect(await failure(asApp, `DELETE FROM ${table}`)).toMatch(/permission denied/);
      expect(await failure(asApp, `TRUNCATE ${table}`)).toMatch(/permission denied/);
      expect(await failure(asApp, `ALTER TABLE ${table} DISABLE TRIGGER ALL`)).toMatch(/must be owner/);
    }
    expect(await failure(asApp, `UPDATE entries SET actor = 'x'`)).toMatch(/permission denied/);
    expect(await failure(asApp, `SET session_replication_role = replica`)).toMatch(/permission denied/);
    expect(await failure(asApp, `SELECT * FROM _prisma_migrations`)).toMatch(/permission denied/);
    expect(await failure(asApp, `DROP TABLE entries`)).toMatch(/must be owner/);
    await t.expectInvariants();
  });

  it('the append-only triggers fire always: a superuser in replica mode still cannot rewrite the journal', async () => {
    const client = await asSuper.connect();
    try {
      await client.query('SET session_replication_role = replica');
      const update = await client.query(`UPDATE entries SET actor = 'forged'`).then(
        () => 'succeeded',
        (e: Error) => e.message,
      );
      expect(update).toMatch(/append-only/);
      const del = await client.query('DELETE FROM transfers').then(
        () => 'succeeded',
        (e: Error) => e.message,
      );
      expect(del).toMatch(/append-only/);
    } finally {
      await client.query('RESET session_replication_role');
      client.release();
    }
    await t.expectInvariants();
  });

  it('the ledger warns when it connects as a superuser or as the owner', async () => {
    expect(await roleWarning(asSuper)).toMatch(/a superuser/);
    expect(await roleWarning(asOwner)).toMatch(/the journal's owner/);
    await t.expectInvariants();
  });
});
