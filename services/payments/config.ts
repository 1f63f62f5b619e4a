import { z } from 'zod';
import { hostPort, intFromEnv, parseEnv } from '../lib/config.js';

/**
 * The payments service's configuration, parsed once at start from the environment. Secrets
 * (database URL, ledger token, Stripe keys, the JWT secret, the lootbox seed secret) have no
 * defaults.
 */
export const paymentsConfigSchema = z
  .object({
    DATABASE_URL: z.string().url(),
    PAYMENTS_HTTP_ADDR: hostPort('127.0.0.1:8080'),
    LEDGER_ADDR: hostPort('127.0.0.1:50051'),
    LEDGER_TOKEN: z.string().min(16, 'a payments-role ledger token (at least 16 characters)'),
    STRIPE_SECRET_KEY: z.string().regex(/^(sk|rk)_(test|live)_\w+$/, 'a Stripe secret key (sk_test_…, sk_live_…)'),
    STRIPE_WEBHOOK_SECRET: z.string().regex(/^whsec_\w+$/, 'a Stripe webhook signing secret (whsec_…)'),
    STRIPE_API_URL: z.string().url().optional(),
    AUTH_JWT_SECRET: z.string().min(32, 'the HS256 secret of user access tokens (at least 32 characters)'),
    AUTH_JWKS_URL: z.string().url().optional(),
    CATALOG_FILE: z.string().min(1).optional(),
    SALE_TIME_ZONE: z
      .string()
      .default('UTC')
      .refine((tz) => {
        try {
          new Intl.DateTimeFormat('en-US', { timeZone: tz });
          return true;
        } catch {
          return false;
        }
      }, 'an IANA time zone (Europe/Berlin, America/New_York, UTC)'),
    /** Secret from which each lootbox window's server seed is derived (needed when a lootbox draws). */
    LOOTBOX_SEED_SECRET: z.string().min(32, 'at least 32 characters').optional(),
    /** Where Checkout sends the buyer back; the page's own URL when unset. */
    PUBLIC_BASE_URL: z.string().url().optional(),
    PAYMENTS_APPLY_BATCH_MAX: intFromEnv(100, 1, 1_000),
    PAYMENTS_APPLY_PERIOD_MS: intFromEnv(1_000, 10, 60_000),
    PAYMENTS_RETRY_BASE_MS: intFromEnv(1_000, 1, 3_600_000),
    PAYMENTS_RETRY_MAX_MS: intFromEnv(300_000, 1, 86_400_000),
    PAYMENTS_APPLY_LEASE_MS: intFromEnv(60_000, 100, 3_600_000),
    /** How long a refund or dispute waits in the inbox for its purchase before it is parked. */
    PAYMENTS_WAIT_FOR_PURCHASE_MS: intFromEnv(7 * 86_400_000, 1, 90 * 86_400_000),
    PAYMENTS_LEDGER_TIMEOUT_MS: intFromEnv(10_000, 100, 120_000),
    PAYMENTS_DB_POOL_SIZE: intFromEnv(10, 2, 100),
    PAYMENTS_DRAIN_GRACE_MS: intFromEnv(10_000, 0, 600_000),
    /** A local system's sign-in page (GET /dev/sign-in); never next to a live Stripe key. */
    PAYMENTS_DEV_SIGN_IN: z.enum(['0', '1']).default('0'),
  })
  .refine((e) => !(e.PAYMENTS_DEV_SIGN_IN === '1' && /_live_/.test(e.STRIPE_SECRET_KEY)), {
    path: ['PAYMENTS_DEV_SIGN_IN'],
    message: 'must not be on with a live Stripe key',
  })
  .refine((e) => e.PAYMENTS_RETRY_BASE_MS <= e.PAYMENTS_RETRY_MAX_MS, {
    path: ['PAYMENTS_RETRY_BASE_MS'],
    message: 'must not exceed PAYMENTS_RETRY_MAX_MS',
  });

export interface PaymentsConfig {
  databaseUrl: string;
  httpAddr: string;
  ledgerAddr: string;
  ledgerToken: string;
  stripeSecretKey: string;
  stripeWebhookSecret: string;
  stripeApiUrl: string | undefined;
  authJwtSecret: string;
  authJwksUrl: string | undefined;
  catalogFile: string | undefined;
  saleTimeZone: string;
  lootboxSeedSecret: string | undefined;
  publicBaseUrl: string | undefined;
  apply: InboxApplyOptions;
  ledgerTimeoutMs: number;
  dbPoolSize: number;
  drainGraceMs: number;
  devSignIn: boolean;
}

export interface InboxApplyOptions {
  batchMax: number;
  periodMs: number;
  retryBaseMs: number;
  retryMaxMs: number;
  leaseMs: number;
  waitForPurchaseMs: number;
}

export function parsePaymentsConfig(env: Record<string, string | undefined>): PaymentsConfig {
  const e = parseEnv('payments', paymentsConfigSchema, env);
  return {
    databaseUrl: e.DATABASE_URL,
    httpAddr: e.PAYMENTS_HTTP_ADDR,
    ledgerAddr: e.LEDGER_ADDR,
    ledgerToken: e.LEDGER_TOKEN,
    stripeSecretKey: e.STRIPE_SECRET_KEY,
    stripeWebhookSecret: e.STRIPE_WEBHOOK_SECRET,
    stripeApiUrl: e.STRIPE_API_URL,
    authJwtSecret: e.AUTH_JWT_SECRET,
    authJwksUrl: e.AUTH_JWKS_URL,
    catalogFile: e.CATALOG_FILE,
    saleTimeZone: e.SALE_TIME_ZONE,
    lootboxSeedSecret: e.LOOTBOX_SEED_SECRET,
    publicBaseUrl: e.PUBLIC_BASE_URL,
    apply: {
      batchMax: e.PAYMENTS_APPLY_BATCH_MAX,
      periodMs: e.PAYMENTS_APPLY_PERIOD_MS,
      retryBaseMs: e.PAYMENTS_RETRY_BASE_MS,
      retryMaxMs: e.PAYMENTS_RETRY_MAX_MS,
      leaseMs: e.PAYMENTS_APPLY_LEASE_MS,
      waitForPurchaseMs: e.PAYMENTS_WAIT_FOR_PURCHASE_MS,
    },
    ledgerTimeoutMs: e.PAYMENTS_LEDGER_TIMEOUT_MS,
    dbPoolSize: e.PAYMENTS_DB_POOL_SIZE,
    drainGraceMs: e.PAYMENTS_DRAIN_GRACE_MS,
    devSignIn: e.PAYMENTS_DEV_SIGN_IN === '1',
  };
}
