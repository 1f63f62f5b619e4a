import { z } from 'zod';
import { hostPort, intFromEnv, parseEnv } from '../lib/config.js';
import type { DbTimeouts } from '../lib/db.js';
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
  /** Server TLS: PEM files. Both or neither; with LEDGER_TLS_CLIENT_CA clients must present a certificate it signed (mTLS). */
  LEDGER_TLS_CERT: z.string().min(1).optional(),
  LEDGER_TLS_KEY: z.string().min(1).optional(),
  LEDGER_TLS_CLIENT_CA: z.string().min(1).optional(),
  /** Prometheus /metrics over HTTP; empty turns it off. */
  LEDGER_METRICS_ADDR: z.union([z.literal(''), hostPort('127.0.0.1:9464')]).default('127.0.0.1:9464'),
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
    .pipe(
      z
        .array(credentialSchema)
        .min(1)
        .superRefine((credentials, ctx) => {
          // The name is recorded as the actor of every entry the credential writes, so it must
          // say who wrote it: one credential per name, and never the ledger's own actors
          // (`ledger.sweeper` writes timeouts and expiries).
          const seenNames = new Set<string>();
          const seenTokens = new Set<string>();
          credentials.forEach((c, i) => {
            if (/^ledger\./i.test(c.name)) {
              ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `"${c.name}": names starting with "ledger." are the ledger's own actors` });
            }
            if (seenNames.has(c.name)) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `"${c.name}" is used by two credentials` });
            if (seenTokens.has(c.token)) ctx.addIssue({ code: 'custom', path: [i, 'token'], message: `credential "${c.name}" reuses another credential's token` });
            seenNames.add(c.name);
            seenTokens.add(c.token);
          });
        }),
    ),
  LEDGER_CURRENCIES: z
    .string()
    .default('USD,EUR,GBP')
    .transform((s) => s.split(',').map((c) => c.trim()))
    .pipe(z.array(z.string().regex(/^[A-Z]{3}$/, 'ISO 4217 codes')).min(1)),
  LEDGER_BATCH_SIZE_MAX: intFromEnv(256, 1, 4_096),
  LEDGER_QUEUE_LENGTH_MAX: intFromEnv(10_000, 1, 1_000_000),
  LEDGER_HOLD_TTL_MS_DEFAULT: intFromEnv(300_000, 1_000, 86_400_000),
  LEDGER_HOLD_TTL_MS_MAX: intFromEnv(3_600_000, 1_000, 86_400_000),
  LEDGER_HOLD_LIFETIME_MS_MAX: intFromEnv(21_600_000, 1_000, 7 * 86_400_000),
  LEDGER_HOLD_SWEEP_PERIOD_MS: intFromEnv(1_000, 10, 3_600_000),
  LEDGER_HOLD_SWEEP_BATCH_MAX: intFromEnv(500, 1, 10_000),
  LEDGER_EXPIRY_SWEEP_PERIOD_MS: intFromEnv(10_000, 10, 3_600_000),
  LEDGER_EXPIRY_SWEEP_BATCH_MAX: intFromEnv(500, 1, 10_000),
  LEDGER_DB_POOL_SIZE: intFromEnv(8, 2, 100),
  /**
   * The readers' pool (StreamJournal, GetEntry, ListEntries, AuditService): its own connections
   * and a tighter statement timeout, so that journal reads wait for each other instead of for
   * the sweepers, the health probe or GetBalance, and a scan cannot run for long.
   */
  LEDGER_DB_READ_POOL_SIZE: intFromEnv(4, 1, 100),
  LEDGER_DB_READ_STATEMENT_TIMEOUT_MS: intFromEnv(5_000, 100, 3_600_000),
  /** StreamJournal calls open at once in this process; the next one is RESOURCE_EXHAUSTED. */
  LEDGER_STREAMS_MAX: intFromEnv(64, 1, 10_000),
  LEDGER_DRAIN_GRACE_MS: intFromEnv(10_000, 0, 600_000),
  LEDGER_DB_STATEMENT_TIMEOUT_MS: intFromEnv(10_000, 100, 3_600_000),
  LEDGER_DB_LOCK_TIMEOUT_MS: intFromEnv(5_000, 100, 3_600_000),
  LEDGER_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS: intFromEnv(10_000, 100, 3_600_000),
  LEDGER_DB_QUERY_TIMEOUT_MS: intFromEnv(15_000, 100, 3_600_000),
  LEDGER_HEALTH_CHECK_PERIOD_MS: intFromEnv(1_000, 50, 60_000),
  LEDGER_WRITER_STUCK_MS: intFromEnv(15_000, 100, 3_600_000),
  LEDGER_CLOCK_SKEW_MS_MAX: intFromEnv(2_000, 0, 3_600_000),
  // AuditService's Wavespeed reconciliation reads the billing listing with this key; without
  // it ReconcileWavespeed answers FAILED_PRECONDITION.
  WAVESPEED_API_KEY: z.string().min(1).optional(),
  WAVESPEED_API_BASE: z.string().url().default('https://api.wavespeed.ai'),
});

export type LedgerConfigEnv = z.infer<typeof ledgerConfigSchema>;

export interface LedgerConfig {
  databaseUrl: string;
  grpcAddr: string;
  /** null: no metrics endpoint. */
  metricsAddr: string | null;
  /** PEM file paths; null: plaintext (the default, meant for loopback addresses only). */
  tlsFiles: { cert: string; key: string; clientCa: string | null } | null;
  credentials: Credential[];
  currencies: string[];
  batchSizeMax: number;
  queueLengthMax: number;
  holdTtlMsDefault: number;
  holdTtlMsMax: number;
  /** How long a hold may live in all, ExtendHold included, from its Reserve. */
  holdLifetimeMsMax: number;
  holdSweepPeriodMs: number;
  holdSweepBatchMax: number;
  expirySweepPeriodMs: number;
  expirySweepBatchMax: number;
  dbPoolSize: number;
  /** Connections of the readers' pool (journal reads and AuditService). */
  dbReadPoolSize: number;
  /** statement_timeout of the readers' pool; the other DB timeouts are dbTimeouts'. */
  dbReadStatementTimeoutMs: number;
  /** StreamJournal calls open at once in this process. */
  streamsMax: number;
  drainGraceMs: number;
  dbTimeouts: DbTimeouts;
  healthCheckPeriodMs: number;
  writerStuckMs: number;
  /** 0 turns the clock check off (tests on a manual clock). */
  clockSkewMsMax: number;
  /** For AuditService.ReconcileWavespeed; absent: not configured. */
  wavespeed?: { baseUrl: string; apiKey: string } | null;
}

export function parseLedgerConfig(env: Record<string, string | undefined>): LedgerConfig {
  const c = parseEnv('ledger', ledgerConfigSchema, env);
  if (c.LEDGER_HOLD_TTL_MS_DEFAULT > c.LEDGER_HOLD_TTL_MS_MAX) {
    throw new Error('invalid ledger configuration: LEDGER_HOLD_TTL_MS_DEFAULT exceeds LEDGER_HOLD_TTL_MS_MAX');
  }
  if (Boolean(c.LEDGER_TLS_CERT) !== Boolean(c.LEDGER_TLS_KEY)) {
    throw new Error('invalid ledger configuration: LEDGER_TLS_CERT and LEDGER_TLS_KEY go together');
  }
  if (c.LEDGER_TLS_CLIENT_CA && !c.LEDGER_TLS_CERT) {
    throw new Error('invalid ledger configuration: LEDGER_TLS_CLIENT_CA needs LEDGER_TLS_CERT and LEDGER_TLS_KEY');
  }
  if (c.LEDGER_HOLD_TTL_MS_MAX > c.LEDGER_HOLD_LIFETIME_MS_MAX) {
    throw new Error('invalid ledger configuration: LEDGER_HOLD_TTL_MS_MAX exceeds LEDGER_HOLD_LIFETIME_MS_MAX');
  }
  return {
    databaseUrl: c.DATABASE_URL,
    grpcAddr: c.LEDGER_GRPC_ADDR,
    metricsAddr: c.LEDGER_METRICS_ADDR === '' ? null : c.LEDGER_METRICS_ADDR,
    tlsFiles: c.LEDGER_TLS_CERT && c.LEDGER_TLS_KEY ? { cert: c.LEDGER_TLS_CERT, key: c.LEDGER_TLS_KEY, clientCa: c.LEDGER_TLS_CLIENT_CA ?? null } : null,
    credentials: c.LEDGER_CREDENTIALS,
    currencies: c.LEDGER_CURRENCIES,
    batchSizeMax: c.LEDGER_BATCH_SIZE_MAX,
    queueLengthMax: c.LEDGER_QUEUE_LENGTH_MAX,
    holdTtlMsDefault: c.LEDGER_HOLD_TTL_MS_DEFAULT,
    holdTtlMsMax: c.LEDGER_HOLD_TTL_MS_MAX,
    holdLifetimeMsMax: c.LEDGER_HOLD_LIFETIME_MS_MAX,
    holdSweepPeriodMs: c.LEDGER_HOLD_SWEEP_PERIOD_MS,
    holdSweepBatchMax: c.LEDGER_HOLD_SWEEP_BATCH_MAX,
    expirySweepPeriodMs: c.LEDGER_EXPIRY_SWEEP_PERIOD_MS,
    expirySweepBatchMax: c.LEDGER_EXPIRY_SWEEP_BATCH_MAX,
    dbPoolSize: c.LEDGER_DB_POOL_SIZE,
    dbReadPoolSize: c.LEDGER_DB_READ_POOL_SIZE,
    dbReadStatementTimeoutMs: c.LEDGER_DB_READ_STATEMENT_TIMEOUT_MS,
    streamsMax: c.LEDGER_STREAMS_MAX,
    drainGraceMs: c.LEDGER_DRAIN_GRACE_MS,
    dbTimeouts: {
      statementTimeoutMs: c.LEDGER_DB_STATEMENT_TIMEOUT_MS,
      lockTimeoutMs: c.LEDGER_DB_LOCK_TIMEOUT_MS,
      idleInTransactionTimeoutMs: c.LEDGER_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS,
      queryTimeoutMs: c.LEDGER_DB_QUERY_TIMEOUT_MS,
      connectTimeoutMs: 5_000,
    },
    healthCheckPeriodMs: c.LEDGER_HEALTH_CHECK_PERIOD_MS,
    writerStuckMs: c.LEDGER_WRITER_STUCK_MS,
    clockSkewMsMax: c.LEDGER_CLOCK_SKEW_MS_MAX,
    wavespeed: c.WAVESPEED_API_KEY ? { baseUrl: c.WAVESPEED_API_BASE, apiKey: c.WAVESPEED_API_KEY } : null,
  };
}
