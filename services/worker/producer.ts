import { Queue, QueueEvents, type Job } from 'bullmq';
import { currentTraceparent } from '../lib/tracing.js';
import { Redis } from 'ioredis';
import {
  enhancementRequestSchema,
  failureReasonOf,
  queueName,
  type EnhancementJobData,
  type EnhancementRequest,
  type EnhancementResult,
  type FailureReason,
} from './job-types.js';

/**
 * The typed producer side: enqueue an enhancement (jobId = requestId, so the same request
 * enqueued twice is one job) and wait for its outcome.
 */

export type EnhancementQueue = Queue<EnhancementJobData, EnhancementResult>;

export function createEnhancementQueue(connection: Redis, prefix = 'bull'): EnhancementQueue {
  return new Queue<EnhancementJobData, EnhancementResult>(queueName, { connection, prefix });
}

/** Retries for failures the worker cannot settle itself (the ledger down for minutes). */
export const defaultJobOptions = {
  attempts: 5,
  backoff: { type: 'exponential', delay: 5_000 },
  removeOnComplete: { age: 7 * 24 * 3600 },
  removeOnFail: { age: 30 * 24 * 3600 },
} as const;

export async function enqueueEnhancement(queue: EnhancementQueue, request: EnhancementRequest): Promise<Job<EnhancementJobData, EnhancementResult>> {
  const traceparent = request.traceparent ?? currentTraceparent() ?? undefined;
  const parsed = enhancementRequestSchema.parse(traceparent ? { ...request, traceparent } : request);
  // BullMQ adds nothing when the jobId exists (and does not say so): a duplicate request is
  // the same job, which is what idempotency on requestId wants.
  return queue.add('enhance', parsed, { ...defaultJobOptions, jobId: parsed.requestId });
}

export type EnhancementOutcome =
  | { ok: true; predictionId: string; outputs: string[]; creditsCharged: bigint; upstreamCostMicros: bigint }
  | { ok: false; reason: FailureReason | 'RETRIES_EXHAUSTED'; message: string };

export function outcomeOf(result: EnhancementResult): EnhancementOutcome {
  return {
    ok: true,
    predictionId: result.predictionId,
    outputs: result.outputs,
    creditsCharged: BigInt(result.creditsCharged),
    upstreamCostMicros: BigInt(result.upstreamCostMicros),
  };
}

/** Enqueues and waits for the job to finish (or `timeoutMs` to pass, which throws). */
export async function runEnhancement(
  queue: EnhancementQueue,
  events: QueueEvents,
  request: EnhancementRequest,
  timeoutMs = 300_000,
): Promise<EnhancementOutcome> {
  const job = await enqueueEnhancement(queue, request);
  try {
    return outcomeOf((await job.waitUntilFinished(events, timeoutMs)) as EnhancementResult);
  } catch (error) {
    const message = (error as Error).message;
    if (/timed out|Job wait/i.test(message) && !(await queue.getJob(job.id!))?.failedReason) throw error;
    return { ok: false, reason: failureReasonOf(message), message };
  }
}

export function createQueueEvents(connection: Redis, prefix = 'bull'): QueueEvents {
  return new QueueEvents(queueName, { connection, prefix });
}

/** A producer's own connection to the queue: what a backend, the CLI, the demo and tests use. */
export interface EnhancementProducer {
  run(request: EnhancementRequest, timeoutMs?: number): Promise<EnhancementOutcome>;
  close(): Promise<void>;
}

/**
 * Opens a queue and its events on two connections to `redisUrl` (QueueEvents blocks its own
 * connection), ready once the events listener is: a job enqueued after that cannot finish
 * unseen. Connections handed to BullMQ stay ours to close, so close() ends both.
 */
export async function openEnhancementProducer(redisUrl: string, prefix = 'bull'): Promise<EnhancementProducer> {
  const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const eventsConnection = connection.duplicate();
  const queue = createEnhancementQueue(connection, prefix);
  const events = createQueueEvents(eventsConnection, prefix);
  const close = async () => {
    await Promise.all([queue.close(), events.close()]);
    connection.disconnect();
    eventsConnection.disconnect();
  };
  try {
    await events.waitUntilReady();
  } catch (error) {
    await close();
    throw error;
  }
  return { run: (request, timeoutMs) => runEnhancement(queue, events, request, timeoutMs), close };
}
