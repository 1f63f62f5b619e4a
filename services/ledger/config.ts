import { z } from 'zod';
import { hostPort, intFromEnv, parseEnv } from '../lib/config.js';
import { roles } from './client/roles.js';
import type { Credential } from './grpc/auth.js';

const credentialSchema = z.object({
  name: z.string().min(1).max(64).regex(/^[\w.:-]+$/, 'letters, digits, _ . : - only'),
  token: z.string().min(16, 'tokens must be at least 16 characters'),
  role: z.enum(roles),
});


/**
 * The ledger's configuration, parsed once from the environment. Secrets (the credentials and
 * the database URL) have no defaults.
 */
export const ledgerConfigSchema = z.object({
  DATABASE_URL: z.string().url(),
  LEDGER_GRPC_ADDR: hostPort('127.0.0.1:50051'),
  LEDGER_CREDENTIALS: z
    .string()
    .transform((raw, ctx) => {
      try {
        return JSON.parse(raw) as unknown;
      } catch {
        ctx.addIssue({ code: 'custom', message: 'must be a JSON array of {name, token, role}' });
        return z.NEVER;
      }
    })
    .pipe(z.array(credentialSchema).min(1)),
  LEDGER_CURRENCIES: z
    .string()
    .default('USD,EUR,GBP')
    .transform((s) => s.split(',').map((c) => c.trim()))
    .pipe(z.array(z.string().regex(/^[A-Z]{3}$/, 'ISO 4217 codes')).min(1)),
  LEDGER_BATCH_SIZE_MAX: intFromEnv(256, 1, 4_096),
  LEDGER_QUEUE_LENGTH_MAX: intFromEnv(10_000, 1, 1_000_000),
  LEDGER_HOLD_TTL_MS_DEFAULT: intFromEnv(300_000, 1_000, 86_400_000),
  LEDGER_HOLD_TTL_MS_MAX: intFromEnv(3_600_000, 1_000, 86_400_000),
  LEDGER_HOLD_SWEEP_PERIOD_MS: intFromEnv(1_000, 10, 3_600_000),
  LEDGER_HOLD_SWEEP_BATCH_MAX: intFromEnv(500, 1, 10_000),
  LEDGER_EXPIRY_SWEEP_PERIOD_MS: intFromEnv(10_000, 10, 3_600_000),
  LEDGER_EXPIRY_SWEEP_BATCH_MAX: intFromEnv(500, 1, 10_000),
  LEDGER_DB_POOL_SIZE: intFromEnv(8, 2, 100),
  LEDGER_DRAIN_GRACE_MS: intFromEnv(10_000, 0, 600_000),
  // AuditService's Wavespeed reconciliation reads the billing listing with this key; without
  // it ReconcileWavespeed answers FAILED_PRECONDITION.
  WAVESPEED_API_KEY: z.string().min(1).optional(),
  WAVESPEED_API_BASE: z.string().url().default('https://api.wavespeed.ai'),
});

export type LedgerConfigEnv = z.infer<typeof ledgerConfigSchema>;

export interface LedgerConfig {
  databaseUrl: string;
  grpcAddr: string;
  credentials: Credential[];
  currencies: string[];
  batchSizeMax: number;
  queueLengthMax: number;
  holdTtlMsDefault: number;
  holdTtlMsMax: number;
  holdSweepPeriodMs: number;
  holdSweepBatchMax: number;
  expirySweepPeriodMs: number;
  expirySweepBatchMax: number;
  dbPoolSize: number;
  drainGraceMs: number;
  /** For AuditService.ReconcileWavespeed; absent: not configured. */
  wavespeed?: { baseUrl: string; apiKey: string } | null;
}

export function parseLedgerConfig(env: Record<string, string | undefined>): LedgerConfig {
  const c = parseEnv('ledger', ledgerConfigSchema, env);
  if (c.LEDGER_HOLD_TTL_MS_DEFAULT > c.LEDGER_HOLD_TTL_MS_MAX) {
    throw new Error('invalid ledger configuration: LEDGER_HOLD_TTL_MS_DEFAULT exceeds LEDGER_HOLD_TTL_MS_MAX');
  }
  return {
    databaseUrl: c.DATABASE_URL,
    grpcAddr: c.LEDGER_GRPC_ADDR,
    credentials: c.LEDGER_CREDENTIALS,
    currencies: c.LEDGER_CURRENCIES,
    batchSizeMax: c.LEDGER_BATCH_SIZE_MAX,
    queueLengthMax: c.LEDGER_QUEUE_LENGTH_MAX,
    holdTtlMsDefault: c.LEDGER_HOLD_TTL_MS_DEFAULT,
    holdTtlMsMax: c.LEDGER_HOLD_TTL_MS_MAX,
    holdSweepPeriodMs: c.LEDGER_HOLD_SWEEP_PERIOD_MS,
    holdSweepBatchMax: c.LEDGER_HOLD_SWEEP_BATCH_MAX,
    expirySweepPeriodMs: c.LEDGER_EXPIRY_SWEEP_PERIOD_MS,
    expirySweepBatchMax: c.LEDGER_EXPIRY_SWEEP_BATCH_MAX,
    dbPoolSize: c.LEDGER_DB_POOL_SIZE,
    drainGraceMs: c.LEDGER_DRAIN_GRACE_MS,
    wavespeed: c.WAVESPEED_API_KEY ? { baseUrl: c.WAVESPEED_API_BASE, apiKey: c.WAVESPEED_API_KEY } : null,
  };
}
