// Payments webhook benchmark: `npm run bench:payments [-- --events N --concurrency C --json FILE]`.
//
// A real ledger and the payments service run as child processes on a fresh migrated database;
// this process plays Stripe: it pre-signs N `checkout.session.completed` events (distinct
// sessions, so every one becomes a ledger Purchase) with Stripe's generateTestHeaderString and
// posts them with C in flight. It reports webhooks/s accepted (2xx answers) and applied (inbox
// rows APPLIED), ack latency percentiles, and CPU per webhook of payments, the ledger and
// PostgreSQL, read from /proc.
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import pg from 'pg';
import Stripe from 'stripe';
import { startChildLedger } from '../../services/ledger/testing/child-ledger.js';
import { testCredentials } from '../../services/ledger/testing/ledger-harness.js';
import { paymentsEnv, startChildPayments, webhookSecret } from '../../services/payments/testing/payments-harness.js';
import { checkoutSession, event, stripeId } from '../../services/payments/testing/stripe-objects.js';
import { startStripeStandIn } from '../../services/payments/testing/stripe-stand-in.js';
import { createMigratedDatabase, dropDatabase, postgresPids, serverFacts, withAdmin } from './databases.js';
import { LatencyHistogram } from './histogram.js';
import { processCpuMicros, processesCpuMicros } from './proc-stat.js';

const { values } = parseArgs({
  options: {
    events: { type: 'string', default: '5000' },
    concurrency: { type: 'string', default: '32' },
    users: { type: 'string', default: '1000' },
    json: { type: 'string' },
    'cpu-prof-dir': { type: 'string' },
  },
});
const events = Number(values.events);
const concurrency = Number(values.concurrency);
const users = Number(values.users);
const adminUrl = process.env.BENCH_DATABASE_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const dbName = `bench_payments_${process.pid}`;

async function main() {
  const facts = await serverFacts(adminUrl);
  const url = await createMigratedDatabase(adminUrl, dbName);
  const credentials = testCredentials();
  const ledger = await startChildLedger({ databaseUrl: url, credentials, env: { LOG_LEVEL: 'warn' } });
  const standIn = await startStripeStandIn();
  const payments = await startChildPayments(
    paymentsEnv(
      { databaseUrl: url, ledgerAddr: ledger.address, ledgerToken: credentials.find((c) => c.role === 'payments')!.token, stripeApiUrl: standIn.url },
      { LOG_LEVEL: 'warn', PAYMENTS_APPLY_PERIOD_MS: '200', PAYMENTS_APPLY_BATCH_MAX: '200', PAYMENTS_RETRY_BASE_MS: '200', PAYMENTS_RETRY_MAX_MS: '5000', PAYMENTS_LEDGER_TIMEOUT_MS: '10000' },
    ),
    20_000,
    // `--cpu-prof-dir DIR` profiles the payments process (written when it stops).
    values['cpu-prof-dir'] ? ['--cpu-prof', `--cpu-prof-dir=${values['cpu-prof-dir']}`] : [],
  );
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  const signer = new Stripe('sk_test_bench');
  const webhookUrl = `${payments.url}/webhooks/stripe`;
  try {
    // Warm up (JIT, connections) with a few events, then measure.
    const build = (n: number, tag: string) =>
      Array.from({ length: n }, (_, i) => {
        const session = checkoutSession({
          amountTotal: 29999,
          metadata: { user_id: `bench-${tag}-${i % users}`, package_id: 'studio-pack' },
          paymentIntent: stripeId('pi'),
          paymentStatus: 'paid',
          status: 'complete',
        });
        const payload = JSON.stringify(event('checkout.session.completed', session));
        return { payload, signature: signer.webhooks.generateTestHeaderString({ payload, secret: webhookSecret }) };
      });
    await send(build(200, 'warm'), webhookUrl, 16, new LatencyHistogram());
    await waitApplied(pool, 200);

    const deliveries = build(events, 'run');
    const pgPids = await withAdmin(adminUrl, (admin) => postgresPids(admin, dbName));
    const cpu0 = { payments: processCpuMicros(payments.child.pid!)!, ledger: processCpuMicros(ledger.pid)!, postgres: processesCpuMicros(pgPids), bench: process.cpuUsage() };
    const histogram = new LatencyHistogram();
    const t0 = performance.now();
    const failures = await send(deliveries, webhookUrl, concurrency, histogram);
    const acceptedMs = performance.now() - t0;
    await waitApplied(pool, 200 + events);
    const appliedMs = performance.now() - t0;
    const benchCpu = process.cpuUsage(cpu0.bench);
    const cpu = {
      payments: processCpuMicros(payments.child.pid!)! - cpu0.payments,
      ledger: processCpuMicros(ledger.pid) ! - cpu0.ledger,
      postgres: processesCpuMicros(pgPids) - cpu0.postgres,
      bench: benchCpu.user + benchCpu.system,
    };
    const purchases = Number((await pool.query(`SELECT count(*) FROM entries WHERE kind = 'PURCHASE'`)).rows[0].count);
    const result = {
      machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model ?? 'unknown', node: process.version, postgres: facts.version, synchronousCommit: facts.synchronousCommit },
      events,
      concurrency,
      failures,
      purchasesInLedger: purchases - 200,
      acceptedPerSecond: Math.round((events / acceptedMs) * 1000),
      appliedPerSecond: Math.round((events / appliedMs) * 1000),
      ackLatencyMs: { p50: histogram.percentileMs(0.5), p90: histogram.percentileMs(0.9), p99: histogram.percentileMs(0.99), max: histogram.percentileMs(1) },
      cpuMicrosPerWebhook: {
        payments: Math.round(cpu.payments / events),
        ledger: Math.round(cpu.ledger / events),
        postgres: Math.round(cpu.postgres / events),
        benchClient: Math.round(cpu.bench / events),
      },
    };
    console.log(`payments webhook bench: ${events} checkout.session.completed events, ${concurrency} in flight, ${os.cpus().length} CPUs`);
    console.log(`  accepted: ${result.acceptedPerSecond} webhooks/s (2xx, stored in the inbox); failures: ${failures}`);
    console.log(`  applied:  ${result.appliedPerSecond} webhooks/s (first send to last APPLIED row); ledger purchases: ${result.purchasesInLedger}`);
    console.log(`  ack latency ms: p50 ${result.ackLatencyMs.p50.toFixed(2)}  p90 ${result.ackLatencyMs.p90.toFixed(2)}  p99 ${result.ackLatencyMs.p99.toFixed(2)}  max ${result.ackLatencyMs.max.toFixed(2)}`);
    console.log(
      `  CPU µs per webhook: payments ${result.cpuMicrosPerWebhook.payments}, ledger ${result.cpuMicrosPerWebhook.ledger}, postgres ${result.cpuMicrosPerWebhook.postgres}, bench client ${result.cpuMicrosPerWebhook.benchClient}`,
    );
    if (values.json) writeFileSync(values.json, `${JSON.stringify(result, null, 2)}\n`);
    if (failures > 0 || result.purchasesInLedger !== events) process.exitCode = 1;
  } finally {
    await pool.end();
    await payments.stop();
    await ledger.stop();
    await standIn.close();
    await dropDatabase(adminUrl, dbName);
  }
}

async function send(deliveries: { payload: string; signature: string }[], url: string, inFlight: number, histogram: LatencyHistogram): Promise<number> {
  let next = 0;
  let failures = 0;
  const worker = async () => {
    while (next < deliveries.length) {
      const d = deliveries[next++]!;
      const start = performance.now();
      const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', 'stripe-signature': d.signature }, body: d.payload });
      await res.arrayBuffer();
      histogram.record((performance.now() - start) * 1000);
      if (res.status !== 200) failures += 1;
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  return failures;
}

async function waitApplied(pool: pg.Pool, total: number): Promise<void> {
  const deadline = Date.now() + 300_000;
  for (;;) {
    const { rows } = await pool.query(`SELECT count(*) FILTER (WHERE status = 'APPLIED')::int AS applied, count(*) FILTER (WHERE status = 'PARKED')::int AS parked FROM payments.stripe_events`);
    if (rows[0].parked > 0) throw new Error(`${rows[0].parked} events parked during the bench`);
    if (rows[0].applied >= total) return;
    if (Date.now() > deadline) throw new Error(`only ${rows[0].applied} of ${total} applied after 300 s`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
