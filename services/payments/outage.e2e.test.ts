import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startChildLedger, killChildLedgers, type ChildLedger } from '../ledger/testing/child-ledger.js';
import { startTestLedger, testCredentials } from '../ledger/testing/ledger-harness.js';
import { createTestDatabase, type TestDatabase } from '../testing/test-db.js';
import { paymentsEnv, startChildPayments, startPaymentsTest, waitFor, webhookSecret, type ChildPayments } from './testing/payments-harness.js';
import { charge, checkoutSession, deliverEvent, event, stripeId } from './testing/stripe-objects.js';
import { startStripeStandIn, type StripeStandIn } from './testing/stripe-stand-in.js';
import Stripe from 'stripe';
import pg from 'pg';

// Nothing is lost and nothing is credited twice when the ledger is down while events arrive,
// or when the payments process is killed (kill -9) after storing an event and before recording
// that it was applied. The ledger and (for the crash) payments run as real child processes.

const credentials = testCredentials();
const paymentsToken = credentials.find((c) => c.role === 'payments')!.token;
let db: TestDatabase;
let pool: pg.Pool;

beforeAll(async () => {
  db = await createTestDatabase();
  pool = new pg.Pool({ connectionString: db.url, max: 2 });
  pool.on('error', () => {});
});
afterAll(async () => {
  await killChildLedgers();
  await pool?.end();
  await db?.drop();
});

const paidSession = (userId: string, packageId: string, amountTotal: number) =>
  checkoutSession({ amountTotal, metadata: { user_id: userId, package_id: packageId }, paymentIntent: stripeId('pi'), paymentStatus: 'paid', status: 'complete' });
const purchaseEntries = async (userId: string) => Number((await pool.query(`SELECT count(*) FROM entries WHERE kind = 'PURCHASE' AND user_id = $1`, [userId])).rows[0].count);
const balanceOf = async (userId: string) =>
  BigInt((await pool.query(`SELECT COALESCE(SUM(a.credits_posted - a.debits_posted), 0)::text AS b FROM lots l JOIN accounts a ON a.id = l.account_id WHERE l.user_id = $1`, [userId])).rows[0].b);

async function expectLedgerInvariants() {
  // A second ledger on the same journal, in this process, runs the invariant checks.
  const checker = await startTestLedger({ db });
  try {
    await checker.expectInvariants();
  } finally {
    await checker.close();
  }
}

describe('ledger down while events arrive', () => {
  it('events are stored and answered 2xx, retried with backoff, and all applied once when the ledger is back', async () => {
    let ledger: ChildLedger = await startChildLedger({ databaseUrl: db.url, credentials });
    const port = ledger.port;
    const p = await startPaymentsTest({ databaseUrl: db.url, ledgerAddr: ledger.address, ledgerToken: paymentsToken, env: { PAYMENTS_LEDGER_TIMEOUT_MS: '500' } });
    try {
      await ledger.stop();
      const sessions = Array.from({ length: 10 }, (_, i) => paidSession(`down-${i}`, 'creator-pack', 6999));
      const events = sessions.map((s) => event('checkout.session.completed', s));
      // A refund of the first purchase arrives during the outage too, and every event twice.
      const refund = event('charge.refunded', charge({ amount: 6999, amountRefunded: 6999, paymentIntent: String(sessions[0]!.payment_intent) }));
      for (const e of [...events, refund, ...events]) expect((await p.deliver(e)).status).toBe(200);
      await waitFor(async () => (await p.eventRow(events[0]!.id)).attempts >= 3, 10_000, 'retries during the outage');
      expect(await p.eventRow(events[0]!.id)).toMatchObject({ status: 'PENDING', last_error: expect.stringMatching(/UNAVAILABLE|DEADLINE/) });
      const ready = await fetch(p.url('/readyz'));
      expect(ready.status).toBe(503);
      expect(await ready.json()).toMatchObject({ database: 'ok', ledger: expect.stringMatching(/unreachable/) });
      expect(await purchaseEntries('down-1')).toBe(0);

      ledger = await startChildLedger({ databaseUrl: db.url, credentials, port });
      await p.settled(20_000);
      for (const e of [...events, refund]) expect((await p.eventRow(e.id)).status).toBe('APPLIED');
      for (let i = 0; i < 10; i += 1) {
        expect(await purchaseEntries(`down-${i}`)).toBe(1);
        expect(await balanceOf(`down-${i}`)).toBe(i === 0 ? 0n : 100n);
      }
      expect((await fetch(p.url('/readyz'))).status).toBe(200);
      const metrics = await (await fetch(p.url('/metrics'))).text();
      expect(metrics).toMatch(/payments_webhook_retries_total\{type="checkout.session.completed",cause="retry"\} \d+/);
    } finally {
      await p.close();
      await ledger.stop();
    }
    await expectLedgerInvariants();
  });
});

describe('payments killed between storing and applying', () => {
  let standIn: StripeStandIn;
  beforeAll(async () => {
    standIn = await startStripeStandIn();
  });
  afterAll(async () => {
    await standIn?.close();
  });

  it('kill -9 while the ledger call is in flight: after a restart the event is applied exactly once', async () => {
    const ledger = await startChildLedger({ databaseUrl: db.url, credentials });
    const env = paymentsEnv(
      { databaseUrl: db.url, ledgerAddr: ledger.address, ledgerToken: paymentsToken, stripeApiUrl: standIn.url },
      { PAYMENTS_APPLY_LEASE_MS: '1000', PAYMENTS_LEDGER_TIMEOUT_MS: '30000', LOG_LEVEL: 'info' },
    );
    let payments: ChildPayments = await startChildPayments(env);
    const signer = new Stripe('sk_test_signer');
    try {
      // The ledger is frozen (SIGSTOP): the apply call goes out and hangs.
      ledger.signal('SIGSTOP');
      const session = paidSession('crash-user', 'studio-pack', 29999);
      const e = event('checkout.session.completed', session);
      expect((await deliverEvent(`${payments.url}/webhooks/stripe`, signer, webhookSecret, e)).status).toBe(200);
      await waitFor(async () => ((await pool.query(`SELECT attempts FROM payments.stripe_events WHERE event_id = $1`, [e.id])).rows[0]?.attempts ?? 0) >= 1, 10_000, 'the event to be claimed');
      await payments.kill();
      expect((await payments.exited).signal).toBe('SIGKILL');
      // The ledger thaws; whatever reached it before the crash it may apply now.
      ledger.signal('SIGCONT');
      const row = (await pool.query(`SELECT status FROM payments.stripe_events WHERE event_id = $1`, [e.id])).rows[0];
      expect(row.status).toBe('PENDING');

      payments = await startChildPayments(env);
      await waitFor(async () => (await pool.query(`SELECT status FROM payments.stripe_events WHERE event_id = $1`, [e.id])).rows[0].status === 'APPLIED', 15_000, 'the event applied after restart');
      const applied = (await pool.query(`SELECT attempts FROM payments.stripe_events WHERE event_id = $1`, [e.id])).rows[0];
      expect(applied.attempts).toBeGreaterThanOrEqual(2);
      expect(await purchaseEntries('crash-user')).toBe(1);
      expect(await balanceOf('crash-user')).toBe(500n);
      // Its log lines about the event carry the Stripe event id.
      await waitFor(() => payments.logs.some((l) => l.stripe_event_id === e.id && String(l.msg).startsWith('applied')), 5_000, 'the applied log line');
      // SIGTERM drains and exits 0.
      await payments.stop();
      expect(await payments.exited).toEqual({ code: 0, signal: null });
    } finally {
      ledger.signal('SIGCONT');
      await payments.stop();
      await ledger.stop();
    }
    await expectLedgerInvariants();
  });
});

describe('a refund whose purchase never comes', () => {
  it('waits PAYMENTS_WAIT_FOR_PURCHASE_MS, then is parked with the reason', async () => {
    const ledger = await startChildLedger({ databaseUrl: db.url, credentials });
    const p = await startPaymentsTest({ databaseUrl: db.url, ledgerAddr: ledger.address, ledgerToken: paymentsToken, env: { PAYMENTS_WAIT_FOR_PURCHASE_MS: '300' } });
    try {
      const orphan = event('charge.refunded', charge({ amount: 500, amountRefunded: 500, paymentIntent: stripeId('pi') }));
      expect((await p.deliver(orphan)).status).toBe(200);
      await p.settled(10_000);
      const row = await p.eventRow(orphan.id);
      expect(row.status).toBe('PARKED');
      expect(row.attempts).toBeGreaterThan(1);
      expect(row.last_error).toMatch(/waited \d+ ms for its purchase: NOT_FOUND/);
    } finally {
      await p.close();
      await ledger.stop();
    }
  });
});
