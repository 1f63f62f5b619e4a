import { z } from 'zod';
import { hostPort, intFromEnv, parseEnv } from '../lib/config.js';

/**
 * The worker's configuration, parsed once from the environment. Secrets (the ledger token and
 * the Wavespeed key) have no defaults; everything else does, so those two are all it needs.
 */
export const workerConfigSchema = z.object({
  REDIS_URL: z.string().regex(/^rediss?:\/\//, 'a redis:// or rediss:// URL').default('redis://127.0.0.1:6379'),
  LEDGER_ADDR: hostPort('127.0.0.1:50051'),
  LEDGER_TOKEN: z.string().min(16, 'a worker-role ledger token (at least 16 characters)'),
  WAVESPEED_API_KEY: z.string().min(8, 'the Wavespeed API key'),
  WAVESPEED_BASE_URL: z.string().url().regex(/^https?:\/\//, 'an http(s) URL').default('https://api.wavespeed.ai'),
  WORKER_CONCURRENCY: intFromEnv(50, 1, 5_000),
  // Submits per minute the Wavespeed account tier allows; unset: no limit.
  WAVESPEED_RATE_PER_MIN: z.coerce.number().int().min(1).max(1_000_000).optional(),
  MODELS_FILE: z.string().min(1).optional(),
  // The public URL at which Wavespeed reaches this worker's webhook receiver (served on
  // WORKER_METRICS_ADDR at /wavespeed/webhook); unset: no webhooks, unknown submits are
  // resolved through the prediction listing alone.
  WAVESPEED_WEBHOOK_URL: z.string().url().regex(/^https?:\/\//, 'an http(s) URL').optional(),
  WORKER_METRICS_ADDR: hostPort('127.0.0.1:9465'),
  WORKER_QUEUE_PREFIX: z.string().regex(/^[\w:.-]{1,64}$/, 'letters, digits, _ : . - only').default('bull'),
  WORKER_HOLD_TTL_MS: intFromEnv(120_000, 3_000, 3_600_000),
  WORKER_LOCK_MS: intFromEnv(30_000, 1_000, 600_000),
  WORKER_STALLED_INTERVAL_MS: intFromEnv(30_000, 500, 600_000),
  WORKER_DRAIN_GRACE_MS: intFromEnv(30_000, 0, 600_000),
  WAVESPEED_POLL_INITIAL_MS: intFromEnv(2_000, 100, 60_000),
  WAVESPEED_POLL_INTERVAL_MS: intFromEnv(1_000, 100, 60_000),
  WAVESPEED_POLL_MAX_MS: intFromEnv(10_000, 100, 300_000),
  WAVESPEED_SUBMIT_TIMEOUT_MS: intFromEnv(10_000, 500, 300_000),
  WAVESPEED_READ_TIMEOUT_MS: intFromEnv(10_000, 500, 300_000),
  WAVESPEED_PREDICTION_TIMEOUT_MS: intFromEnv(900_000, 1_000, 86_400_000),
  WORKER_LEDGER_RETRY_MS: intFromEnv(60_000, 0, 3_600_000),
});

export type WorkerEnv = z.infer<typeof workerConfigSchema>;

export interface WorkerConfig {
  redisUrl: string;
  ledgerAddr: string;
  ledgerToken: string;
  wavespeed: { apiKey: string; baseUrl: string; submitTimeoutMs: number; readTimeoutMs: number };
  concurrency: number;
  ratePerMin: number | null;
  modelsFile: string | undefined;
  webhookUrl: string | undefined;
  metricsAddr: string;
  queuePrefix: string;
  flow: FlowTimings;
  lockMs: number;
  stalledIntervalMs: number;
  drainGraceMs: number;
}

/** The timings the enhancement flow runs on (tests shorten them). */
export interface FlowTimings {
  holdTtlMs: number;
  pollInitialMs: number;
  pollIntervalMs: number;
  pollMaxMs: number;
  predictionTimeoutMs: number;
  ledgerRetryMs: number;
  /** How long after a submit started every other submit of that moment has settled. */
  submitTimeoutMs: number;
}

export function parseWorkerConfig(env: Record<string, string | undefined>): WorkerConfig {
  const c = parseEnv('worker', workerConfigSchema, env);
  return {
    redisUrl: c.REDIS_URL,
    ledgerAddr: c.LEDGER_ADDR,
    ledgerToken: c.LEDGER_TOKEN,
    wavespeed: {
      apiKey: c.WAVESPEED_API_KEY,
      baseUrl: c.WAVESPEED_BASE_URL,
      submitTimeoutMs: c.WAVESPEED_SUBMIT_TIMEOUT_MS,
      readTimeoutMs: c.WAVESPEED_READ_TIMEOUT_MS,
    },
    concurrency: c.WORKER_CONCURRENCY,
    ratePerMin: c.WAVESPEED_RATE_PER_MIN ?? null,
    modelsFile: c.MODELS_FILE,
    webhookUrl: c.WAVESPEED_WEBHOOK_URL,
    metricsAddr: c.WORKER_METRICS_ADDR,
    queuePrefix: c.WORKER_QUEUE_PREFIX,
    flow: {
      holdTtlMs: c.WORKER_HOLD_TTL_MS,
      pollInitialMs: c.WAVESPEED_POLL_INITIAL_MS,
      pollIntervalMs: c.WAVESPEED_POLL_INTERVAL_MS,
      pollMaxMs: c.WAVESPEED_POLL_MAX_MS,
      predictionTimeoutMs: c.WAVESPEED_PREDICTION_TIMEOUT_MS,
      ledgerRetryMs: c.WORKER_LEDGER_RETRY_MS,
      submitTimeoutMs: c.WAVESPEED_SUBMIT_TIMEOUT_MS,
    },
    lockMs: c.WORKER_LOCK_MS,
    stalledIntervalMs: c.WORKER_STALLED_INTERVAL_MS,
    drainGraceMs: c.WORKER_DRAIN_GRACE_MS,
  };
}
