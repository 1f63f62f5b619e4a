import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { SignJWT } from 'jose';
import pg from 'pg';
import Stripe from 'stripe';
import type { Clock } from '../../lib/clock.js';
import { createLogger } from '../../lib/logger.js';
import { startPayments, type RunningPayments } from '../main.js';
import { deliverEvent } from './stripe-objects.js';
import { startStripeStandIn, type StripeStandIn } from './stripe-stand-in.js';

/**
 * Test wiring for the payments service: a Stripe stand-in, the service on 127.0.0.1:0 against
 * a given database and ledger, user tokens, and helpers to deliver signed events and wait for
 * the inbox. The ledger itself comes from services/ledger/testing (a real one).
 */

export const webhookSecret = 'whsec_test_payments_0123456789abcdef';
export const stripeSecretKey = 'sk_test_payments_0123456789abcdef';
export const jwtSecret = 'test-jwt-secret-for-payments-0123456789';
export const lootboxSeedSecret = 'test-lootbox-seed-secret-0123456789abcdef';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

export interface PaymentsTestOptions {
  databaseUrl: string;
  ledgerAddr: string;
  ledgerToken: string;
  clock?: Clock;
  env?: Record<string, string>;
  applier?: boolean;
}

export function paymentsEnv(o: { databaseUrl: string; ledgerAddr: string; ledgerToken: string; stripeApiUrl: string }, extra: Record<string, string> = {}) {
  return {
    DATABASE_URL: o.databaseUrl,
    PAYMENTS_HTTP_ADDR: '127.0.0.1:0',
    LEDGER_ADDR: o.ledgerAddr,
    LEDGER_TOKEN: o.ledgerToken,
    STRIPE_SECRET_KEY: stripeSecretKey,
    STRIPE_WEBHOOK_SECRET: webhookSecret,
    STRIPE_API_URL: o.stripeApiUrl,
    AUTH_JWT_SECRET: jwtSecret,
    LOOTBOX_SEED_SECRET: lootboxSeedSecret,
    SALE_TIME_ZONE: 'UTC',
    PAYMENTS_APPLY_PERIOD_MS: '50',
    PAYMENTS_RETRY_BASE_MS: '20',
    PAYMENTS_RETRY_MAX_MS: '200',
    PAYMENTS_LEDGER_TIMEOUT_MS: '3000',
    ...extra,
  };
}

export interface PaymentsTest {
  payments: RunningPayments;
  stripeStandIn: StripeStandIn;
  /** Stripe's library, used only to sign test events. */
  signer: Stripe;
  pool: pg.Pool;
  webhookUrl: string;
  url(path: string): string;
  /** Delivers an event (object or raw payload) signed with the endpoint secret. */
  deliver(event: Stripe.Event | string, timestampSeconds?: number): Promise<Response>;
  token(userId: string, options?: { expiresInSeconds?: number; secret?: string; now?: Date }): Promise<string>;
  /** Waits until every stored event has finished (applied, ignored or parked). */
  settled(timeoutMs?: number): Promise<void>;
  eventRow(eventId: string): Promise<{ status: string; attempts: number; last_error: string | null; ledger_entry_id: string | null }>;
  close(): Promise<void>;
}

export async function startPaymentsTest(o: PaymentsTestOptions): Promise<PaymentsTest> {
  const stripeStandIn = await startStripeStandIn();
  const env = paymentsEnv({ ...o, stripeApiUrl: stripeStandIn.url }, o.env);
  const payments = await startPayments(env, createLogger('payments-test', process.env.TEST_LOG_LEVEL ?? 'silent'), {
    ...(o.clock ? { clock: o.clock } : {}),
    applier: o.applier ?? true,
  });
  const signer = new Stripe(stripeSecretKey);
  const pool = new pg.Pool({ connectionString: o.databaseUrl, max: 2 });
  pool.on('error', () => {});
  const webhookUrl = `${payments.url}/webhooks/stripe`;
  return {
    payments,
    stripeStandIn,
    signer,
    pool,
    webhookUrl,
    url: (p) => `${payments.url}${p}`,
    deliver: (event, timestampSeconds) =>
      deliverEvent(webhookUrl, signer, webhookSecret, event, timestampSeconds ?? (o.clock ? Math.floor(o.clock.now().getTime() / 1000) : undefined)),
    token: (userId, t = {}) => {
      const now = Math.floor((t.now ?? o.clock?.now() ?? new Date()).getTime() / 1000);
      return new SignJWT({ role: 'authenticated', aud: 'authenticated' })
        .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
        .setSubject(userId)
        .setIssuedAt(now)
        .setExpirationTime(now + (t.expiresInSeconds ?? 3600))
        .sign(new TextEncoder().encode(t.secret ?? jwtSecret));
    },
    settled: (timeoutMs = 15_000) => waitFor(async () => (await pool.query(`SELECT count(*)::int AS n FROM payments.stripe_events WHERE status = 'PENDING'`)).rows[0].n === 0, timeoutMs, 'inbox settled'),
    async eventRow(eventId) {
      const { rows } = await pool.query(`SELECT status, attempts, last_error, ledger_entry_id::text FROM payments.stripe_events WHERE event_id = $1`, [eventId]);
      if (!rows[0]) throw new Error(`no inbox row for ${eventId}`);
      return rows[0];
    },
    async close() {
      await payments.stop();
      await stripeStandIn.close();
      await pool.end();
    },
  };
}

/** Polls `condition` until it holds or the deadline passes. */
export async function waitFor(condition: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await condition()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export interface ChildPayments {
  child: ChildProcess;
  url: string;
  logs: Record<string, unknown>[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(): Promise<void>;
  stop(): Promise<void>;
}

/** The payments service as its own process (`node --import tsx services/payments/main.ts`). */
export async function startChildPayments(env: Record<string, string>, readyTimeoutMs = 20_000, nodeArgs: readonly string[] = []): Promise<ChildPayments> {
  const childEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v === undefined || k === 'NODE_OPTIONS' || k.startsWith('VITEST') || k.startsWith('PAYMENTS_')) continue;
    childEnv[k] = v;
  }
  Object.assign(childEnv, { LOG_LEVEL: 'info', ...env });
  const child = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', path.join(repoRoot, 'services/payments/main.ts')], { cwd: repoRoot, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: Record<string, unknown>[] = [];
  const stderr: string[] = [];
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  let onReady: ((url: string) => void) | null = null;
  createInterface({ input: child.stdout! }).on('line', (line) => {
    try {
      const parsed = JSON.parse(line) as Record<string, unknown>;
      logs.push(parsed);
      if (parsed.msg === 'ready' && typeof parsed.url === 'string') onReady?.(parsed.url);
    } catch {
      stderr.push(line);
    }
  });
  createInterface({ input: child.stderr! }).on('line', (line) => stderr.push(line));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`child payments not ready after ${readyTimeoutMs} ms: ${stderr.slice(-20).join('\n')}`)), readyTimeoutMs);
    onReady = (u) => {
      clearTimeout(timer);
      resolve(u);
    };
    void exited.then((e) => reject(new Error(`child payments exited (${e.code ?? e.signal}) before ready: ${stderr.slice(-20).join('\n')}`)));
  });
  return {
    child,
    url,
    logs,
    exited,
    async kill() {
      child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}
