import { z } from 'zod';

/** The BullMQ queue the worker consumes (BullMQ's default prefix unless configured). */
export const queueName = 'enhancements';

/**
 * A job as producers add it, with `jobId = requestId`. `requestId` is the business key every
 * step is idempotent on; it goes into ledger idempotency keys (≤ 128 characters in all).
 */
export const enhancementRequestSchema = z.object({
  requestId: z
    .string()
    .min(1)
    .max(64)
    .regex(/^[A-Za-z0-9_.:-]+$/, 'letters, digits and _ . : - only'),
  userId: z.string().min(1).max(128),
  model: z.string().min(1).max(200),
  input: z.record(z.string(), z.unknown()),
  /** The producer's trace context (W3C traceparent), so the job's spans join its trace. */
  traceparent: z
    .string()
    .regex(/^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/, 'a W3C traceparent')
    .optional(),
});
export type EnhancementRequest = z.infer<typeof enhancementRequestSchema>;

/**
 * What the worker records on the job (`job.data.state`) so a re-delivered job resumes where it
 * stopped instead of repeating a step:
 * - `submitting`: the POST to Wavespeed was (maybe) sent; its outcome is unknown until recorded.
 * - `submitted`: the prediction id is known; a re-delivery polls it.
 * - `done`: the job's result, returned again on a re-delivery without touching anything.
 */
export type JobState =
  | { phase: 'submitting'; holdId: string; attempt: number; submitStartedAtMs: number }
  | { phase: 'submitted'; holdId: string; attempt: number; predictionId: string; submittedAtMs: number }
  | { phase: 'done'; result: EnhancementResult }
  | { phase: 'failed'; reason: FailureReason; message: string; orphanPredictionIds?: string[] };

export type EnhancementJobData = EnhancementRequest & { state?: JobState };

/** The job's return value. Amounts are decimal strings: they are bigints and JSON has none. */
export interface EnhancementResult {
  predictionId: string;
  outputs: string[];
  creditsCharged: string;
  upstreamCostMicros: string;
}

/** Why a job failed, as a product can show it; the job's failedReason starts with it. */
export const failureReasons = [
  'INVALID_INPUT',
  'UNKNOWN_MODEL',
  'INSUFFICIENT_CREDITS',
  'UPSTREAM_FAILED',
  'UPSTREAM_REJECTED',
  'UPSTREAM_UNKNOWN_OUTCOME',
  'HOLD_CLOSED',
  'HOLD_EXPIRED',
  'DUPLICATE_REQUEST',
] as const;
export type FailureReason = (typeof failureReasons)[number];

/** The reason at the start of a failed job's `failedReason` (`REASON: message`). */
export function failureReasonOf(failedReason: string | undefined): FailureReason | 'RETRIES_EXHAUSTED' {
  const code = failedReason?.split(':', 1)[0] ?? '';
  return (failureReasons as readonly string[]).includes(code) ? (code as FailureReason) : 'RETRIES_EXHAUSTED';
}
