import { contextFrom, inSpan, SpanKind } from '../lib/tracing.js';
import { DelayedError, UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from '../lib/logger.js';
import { failureReasonOf, queueName, type EnhancementJobData, type EnhancementResult } from './job-types.js';
import { processEnhancement, type FlowDeps } from './process-enhancement.js';
import { HandBack } from './sleep.js';

export interface EnhancementWorkerOptions {
  /** An ioredis connection with `maxRetriesPerRequest: null` (BullMQ requires it). */
  connection: Redis;
  prefix: string;
  concurrency: number;
  /** Wavespeed submits per minute for the account tier; null: no limit. */
  ratePerMin: number | null;
  lockMs: number;
  stalledIntervalMs: number;
  deps: FlowDeps;
  log: Logger;
}

/**
 * BullMQ's limiter (global across worker processes: it lives in Redis) as a steady rate: `max`
 * job starts per `duration`, with the window a tenth of a second, so the tier's per-minute
 * budget is spread evenly instead of spent in bursts that meet Wavespeed's own bucket at a
 * window edge. Every job start is at most one submit, so submits stay within the tier.
 */
export function limiterFor(ratePerMin: number): { max: number; duration: number } {
  const max = Math.max(1, Math.floor(ratePerMin / 600));
  return { max, duration: Math.ceil((60_000 * max) / ratePerMin) };
}

export interface EnhancementWorker {
  worker: Worker<EnhancementJobData, EnhancementResult>;
  /**
   * Graceful stop: take no new jobs; wait for the ones in flight up to `graceMs`, then hand the
   * rest back to the queue (they resume from what they recorded, on this or another worker).
   */
  close(graceMs: number): Promise<void>;
}

export function createEnhancementWorker(o: EnhancementWorkerOptions): EnhancementWorker {
  const { deps } = o;
  const processor = async (job: Job<EnhancementJobData, EnhancementResult>, token?: string, signal?: AbortSignal) => {
    try {
      // One span per delivery of the job, continuing the producer's trace.
      const result = await inSpan(
        'worker',
        'enhancement',
        { kind: SpanKind.CONSUMER, parent: contextFrom(job.data.traceparent), attributes: { 'enhancement.request_id': job.data.requestId, 'enhancement.model': job.data.model, 'bullmq.job_id': job.id ?? '' } },
        () => processEnhancement(job, deps, signal),
      );
      deps.metrics.jobs.inc({ outcome: 'completed' });
      return result;
    } catch (error) {
      if (error instanceof HandBack) {
        // Back to the queue at once, with everything recorded on it; not counted as an attempt.
        await job.moveToDelayed(Date.now(), token);
        deps.metrics.jobs.inc({ outcome: 'handed_back' });
        throw new DelayedError();
      }
      if (error instanceof UnrecoverableError) deps.metrics.jobs.inc({ outcome: failureReasonOf(error.message) });
      else {
        const last = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
        deps.metrics.jobs.inc({ outcome: last ? 'RETRIES_EXHAUSTED' : 'retry' });
        o.log.warn({ err: error, requestId: job.data.requestId, last }, last ? 'job failed for good' : 'job failed; BullMQ retries it');
        // Out of attempts with a prediction submitted (the ledger down for longer than every
        // retry): the user is not charged and the hold lapses, but Wavespeed may bill us.
        const state = job.data.state;
        if (last && state?.phase === 'submitted') {
          const model = deps.models.get(job.data.model);
          await deps.claims
            .recordOwed(job.data.requestId, job.data.model, model?.upstreamCostMicros ?? 0n, model?.currency ?? 'USD', state.predictionId)
            .catch((e: unknown) => o.log.error({ err: e, requestId: job.data.requestId }, 'could not record the owed prediction'));
        }
      }
      throw error;
    }
  };
  const worker = new Worker<EnhancementJobData, EnhancementResult>(queueName, processor, {
    connection: o.connection,
    prefix: o.prefix,
    concurrency: o.concurrency,
    lockDuration: o.lockMs,
    stalledInterval: o.stalledIntervalMs,
    // A job whose worker died is delivered again; it resumes from its recorded state, so a few
    // stalls are safe to retry.
    maxStalledCount: 5,
    ...(o.ratePerMin !== null ? { limiter: limiterFor(o.ratePerMin) } : {}),
  });
  worker.on('error', (error) => o.log.error({ err: error }, 'worker error'));
  return {
    worker,
    async close(graceMs: number) {
      const timer = setTimeout(() => worker.cancelAllJobs('shutdown'), graceMs);
      try {
        await worker.close();
      } finally {
        clearTimeout(timer);
      }
    },
  };
}
