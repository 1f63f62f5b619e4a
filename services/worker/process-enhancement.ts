import { randomUUID } from 'node:crypto';
import { UnrecoverableError, type Job } from 'bullmq';
import type { Logger } from '../lib/logger.js';
import type { FlowTimings } from './config.js';
import {
  enhancementRequestSchema,
  type EnhancementJobData,
  type EnhancementRequest,
  type EnhancementResult,
  type FailureReason,
  type JobState,
} from './job-types.js';
import type { LedgerGateway } from './ledger-gateway.js';
import type { WorkerMetrics } from './metrics.js';
import { inputProblem, type ModelEntry, type ModelTable } from './models.js';
import type { PredictionClaims } from './prediction-claims.js';
import { resolveUnknownSubmit } from './resolve-unknown-submit.js';
import type { SubmitRateLimiter } from './submit-rate-limiter.js';
import type { WebhookInbox } from './webhook-inbox.js';
import { sleep } from './sleep.js';
import { finalStatuses, type WavespeedClient } from './wavespeed-client.js';

/**
 * One enhancement, idempotent on `requestId` (BullMQ delivers at least once):
 *
 *   Reserve (key from requestId) → record "submitting" → submit to Wavespeed → record the
 *   prediction id → poll until a final status → Capture with the upstream cost and prediction
 *   id, or Release. A hold lease (ExtendHold) runs while the job does.
 *
 * A re-delivered job reads what the last run recorded on the job: with a prediction id it polls
 * that prediction again; in "submitting" the last submit's outcome is unknown and is resolved
 * through Wavespeed's prediction listing before anything is sent again; "done" returns the
 * recorded result. Every ledger write carries a key derived from requestId, so repeating one
 * is answered with the first result and charges nothing twice.
 */

export interface FlowDeps {
  ledger: LedgerGateway;
  wavespeed: WavespeedClient;
  models: ModelTable;
  claims: PredictionClaims;
  metrics: WorkerMetrics;
  log: Logger;
  timings: FlowTimings;
  /** The account tier's submit rate, shared across processes; null: no limit. */
  submitLimiter: SubmitRateLimiter | null;
  /** Wavespeed webhooks tie a task to its request; null when no public URL is configured. */
  webhooks: WebhookInbox | null;
}

type EnhancementJob = Job<EnhancementJobData, EnhancementResult>;

/** Fails the job for good: BullMQ does not retry it; the reason leads the failedReason. */
export function fail(reason: FailureReason, message: string): UnrecoverableError {
  return new UnrecoverableError(`${reason}: ${message}`);
}

const keyOf = (requestId: string, step: string) => `enh:${requestId}:${step}`;

export async function processEnhancement(job: EnhancementJob, deps: FlowDeps, signal?: AbortSignal): Promise<EnhancementResult> {
  const recorded = job.data.state;
  if (recorded?.phase === 'done') return recorded.result;
  if (recorded?.phase === 'failed') throw fail(recorded.reason, recorded.message);

  const parsed = enhancementRequestSchema.safeParse(job.data);
  if (!parsed.success) {
    const problem = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    throw fail('INVALID_INPUT', problem);
  }
  const request = parsed.data;
  if (job.id !== undefined && job.id !== request.requestId) {
    throw fail('INVALID_INPUT', `jobId must equal requestId (${job.id} ≠ ${request.requestId})`);
  }
  const model = deps.models.get(request.model);
  if (!model) throw fail('UNKNOWN_MODEL', `model ${request.model} is not in the model table`);
  const problem = inputProblem(model, request.input);
  if (problem !== null) throw fail('INVALID_INPUT', problem);

  const run = new EnhancementRun(job, request, model, deps, signal);
  return run.execute(recorded);
}

class EnhancementRun {
  #log: Logger;
  #holdId = '';
  #leaseTimer: NodeJS.Timeout | null = null;
  #leaseStopped = false;

  constructor(
    private readonly job: EnhancementJob,
    private readonly request: EnhancementRequest,
    private readonly model: ModelEntry,
    private readonly deps: FlowDeps,
    private readonly signal: AbortSignal | undefined,
  ) {
    this.#log = deps.log.child({ requestId: request.requestId, userId: request.userId, model: model.id });
  }

  async execute(recorded: JobState | undefined): Promise<EnhancementResult> {
    // A resumed job uses the hold it recorded; only a job that recorded nothing (re)reserves,
    // and then the same key and request answer with the same hold.
    if (recorded?.phase === 'submitting' || recorded?.phase === 'submitted') this.#holdId = recorded.holdId;
    else await this.#reserve();
    // A resumed job's hold may be close to its TTL: extend it at once, then on the lease period.
    this.#startLease(recorded !== undefined);
    try {
      let attempt = 1;
      let predictionId: string;
      let submittedAtMs: number;
      if (recorded?.phase === 'submitted') {
        predictionId = recorded.predictionId;
        submittedAtMs = recorded.submittedAtMs;
        this.#log = this.#log.child({ predictionId });
        this.#log.info('resuming: polling the recorded prediction');
      } else {
        const adopted =
          recorded?.phase === 'submitting'
            ? await this.#resolveUnknown(recorded.attempt, recorded.submitStartedAtMs, 'redelivered while submitting')
            : null;
        if (adopted !== null && recorded?.phase === 'submitting') {
          predictionId = adopted;
          submittedAtMs = recorded.submitStartedAtMs;
        } else {
          if (recorded?.phase === 'submitting') attempt = recorded.attempt + 1;
          ({ predictionId, submittedAtMs } = await this.#submit(attempt));
        }
      }
      const final = await this.#poll(predictionId, submittedAtMs);
      if (final.status !== 'completed') {
        await this.#release();
        throw await this.#failed('UPSTREAM_FAILED', `prediction ${predictionId} ended ${final.status}${final.error ? `: ${final.error}` : ''}`);
      }
      return await this.#charge(predictionId, final.outputs);
    } finally {
      this.#stopLease();
    }
  }

  async #reserve(): Promise<void> {
    const r = await this.deps.ledger.call(
      'reserve',
      {
        idempotencyKey: keyOf(this.request.requestId, 'reserve'),
        userId: this.request.userId,
        credits: this.model.creditsPrice,
        ttlMs: BigInt(this.deps.timings.holdTtlMs),
        metadata: { request_id: this.request.requestId, model: this.model.id },
      },
      this.#log,
      this.signal,
    );
    if (!r.ok) {
      if (r.reason === 'INSUFFICIENT_CREDITS') throw await this.#failed('INSUFFICIENT_CREDITS', `${this.model.creditsPrice} credits needed`);
      if (r.reason === 'ALREADY_EXISTS') throw await this.#failed('INVALID_INPUT', 'requestId was already used for a different request');
      throw new Error(`reserve refused: ${r.reason}: ${r.message}`);
    }
    this.#holdId = r.value.holdId;
    if (r.value.replayed) await this.#checkReplayedHold();
  }

  /**
   * Reserve answered with an earlier hold although this job recorded nothing: either an earlier
   * run of this job died between Reserve and recording its submit (nothing was sent; carry on),
   * or another job with this requestId finished it and was removed since (do not submit again).
   * The hold tells which: still open, closed (captured or released), or lapsed.
   */
  async #checkReplayedHold(): Promise<void> {
    const r = await this.deps.ledger.call(
      'extendHold',
      { idempotencyKey: keyOf(this.request.requestId, `extend:${randomUUID()}`), holdId: this.#holdId, ttlMs: BigInt(this.deps.timings.holdTtlMs) },
      this.#log,
    );
    if (r.ok) return;
    if (r.reason === 'HOLD_CLOSED') throw await this.#failed('DUPLICATE_REQUEST', 'this requestId was already processed by an earlier job');
    if (r.reason === 'HOLD_EXPIRED') throw await this.#failed('HOLD_EXPIRED', 'the credits held for this request lapsed before it was submitted; not charged');
    throw new Error(`extendHold refused: ${r.reason}: ${r.message}`);
  }

  #startLease(extendNow: boolean): void {
    const periodMs = Math.max(500, Math.floor(this.deps.timings.holdTtlMs / 3));
    const tick = async () => {
      if (this.#leaseStopped) return;
      try {
        const r = await this.deps.ledger.call(
          'extendHold',
          {
            // Each extension is a new request: "now + ttl" from this moment, not a replay.
            idempotencyKey: keyOf(this.request.requestId, `extend:${randomUUID()}`),
            holdId: this.#holdId,
            ttlMs: BigInt(this.deps.timings.holdTtlMs),
          },
          this.#log,
        );
        if (r.ok) this.deps.metrics.holdsExtended.inc();
        else {
          this.#log.warn({ reason: r.reason }, 'hold could not be extended; the lease stops');
          return;
        }
      } catch (error) {
        this.#log.warn({ err: error }, 'hold extension failed; will try again next period');
      }
      if (!this.#leaseStopped) this.#leaseTimer = setTimeout(() => void tick(), periodMs);
    };
    this.#leaseTimer = setTimeout(() => void tick(), extendNow ? 0 : periodMs);
  }

  #stopLease(): void {
    this.#leaseStopped = true;
    if (this.#leaseTimer) clearTimeout(this.#leaseTimer);
  }

  async #record(state: JobState): Promise<void> {
    await this.job.updateData({ ...this.request, state });
  }

  /** Records a final failure on the job (a re-delivery fails the same way) and returns the error. */
  async #failed(reason: FailureReason, message: string, extra: { orphanPredictionIds?: string[] } = {}) {
    await this.#record({ phase: 'failed', reason, message, ...extra });
    this.#log.warn({ reason }, message);
    return fail(reason, message);
  }

  async #submit(firstAttempt: number): Promise<{ predictionId: string; submittedAtMs: number }> {
    const t = this.deps.timings;
    const giveUpAt = Date.now() + t.predictionTimeoutMs;
    let delayMs = t.pollIntervalMs;
    for (let attempt = firstAttempt; ; attempt++) {
      await this.deps.submitLimiter?.acquire(this.signal);
      const startedAtMs = Date.now();
      // Written before the request leaves: if this process dies before the answer is recorded,
      // the next run knows the outcome is unknown and must not blindly send it again.
      await this.#record({ phase: 'submitting', holdId: this.#holdId, attempt, submitStartedAtMs: startedAtMs });
      const outcome = await this.deps.wavespeed.submit(this.model.id, this.request.input, this.deps.webhooks?.urlFor(this.request.requestId, attempt));
      this.deps.metrics.wavespeedRequests.inc({ op: 'submit', result: outcome.kind === 'refused' ? String(outcome.status) : outcome.kind });
      if (outcome.kind === 'created') {
        const predictionId = outcome.predictionId;
        await this.deps.claims.claim(predictionId, this.request.requestId);
        await this.#record({ phase: 'submitted', holdId: this.#holdId, attempt, predictionId, submittedAtMs: startedAtMs });
        this.#log = this.#log.child({ predictionId });
        this.#log.info({ attempt }, 'submitted');
        return { predictionId, submittedAtMs: startedAtMs };
      }
      if (outcome.kind === 'unknown') {
        this.#log.warn({ error: outcome.error, attempt }, 'submit outcome unknown; resolving it');
        const adopted = await this.#resolveUnknown(attempt, startedAtMs, outcome.error);
        if (adopted !== null) return { predictionId: adopted, submittedAtMs: startedAtMs };
        continue; // Resolved as not created: sending again is safe.
      }
      if (outcome.kind === 'refused' && outcome.status !== 429) {
        await this.#release();
        if (outcome.status === 400 || outcome.status === 422) throw await this.#failed('INVALID_INPUT', `Wavespeed refused the input: ${outcome.message}`);
        throw await this.#failed('UPSTREAM_REJECTED', `Wavespeed refused the submit (HTTP ${outcome.status}): ${outcome.message}`);
      }
      // 429 (nothing created) or a connection that never opened: wait and send again.
      const waitMs = Math.max(outcome.kind === 'refused' ? (outcome.retryAfterMs ?? delayMs) : delayMs, 100);
      if (Date.now() + waitMs > giveUpAt) {
        await this.#release();
        throw await this.#failed('UPSTREAM_REJECTED', `Wavespeed did not accept the submit within ${t.predictionTimeoutMs} ms`);
      }
      this.#log.warn({ kind: outcome.kind, waitMs }, 'submit not accepted; waiting');
      await sleep(waitMs, this.signal);
      delayMs = Math.min(delayMs * 2, t.pollMaxMs);
    }
  }

  /**
   * Resolves a submit whose answer was lost. Returns null when it is known that no task was
   * created (the caller may submit again), or the prediction id when Wavespeed's signed webhook
   * for this very submit named its task (adopted: claimed and recorded, then polled like any
   * other). Otherwise releases the hold, records the orphaned predictions for reconciliation
   * and fails the job: the user is not charged for a result that cannot be proven theirs.
   */
  async #resolveUnknown(attempt: number, submitStartedAtMs: number, why: string): Promise<string | null> {
    const resolution = await resolveUnknownSubmit(
      {
        wavespeed: this.deps.wavespeed,
        claims: this.deps.claims,
        log: this.#log,
        submitTimeoutMs: this.deps.timings.submitTimeoutMs,
        signal: this.signal,
      },
      this.model.id,
      submitStartedAtMs,
    );
    if (resolution.kind !== 'not-created' && this.deps.webhooks) {
      const task = await this.#awaitWebhook(this.deps.webhooks, attempt, submitStartedAtMs);
      if (task !== null) {
        this.deps.metrics.unknownOutcomes.inc({ resolution: 'webhook' });
        await this.deps.claims.claim(task.id, this.request.requestId);
        await this.#record({ phase: 'submitted', holdId: this.#holdId, attempt, predictionId: task.id, submittedAtMs: submitStartedAtMs });
        this.#log = this.#log.child({ predictionId: task.id });
        this.#log.info({ why, attempt }, 'unknown submit resolved by its webhook: adopting the prediction');
        return task.id;
      }
    }
    if (resolution.kind === 'undetermined') {
      this.deps.metrics.unknownOutcomes.inc({ resolution: 'undetermined' });
      await this.deps.claims.recordUndetermined(this.request.requestId, this.model.id, submitStartedAtMs, this.deps.timings.submitTimeoutMs);
      await this.#release();
      throw await this.#failed(
        'UPSTREAM_UNKNOWN_OUTCOME',
        `the submit's answer was lost (${why}) and the listing holds ${resolution.total} predictions for its window, more than are read (${resolution.listed}); not charged, window recorded for reconciliation`,
      );
    }
    // Attribution is exclusive: a prediction another unknown submit already took is not ours.
    const orphans =
      resolution.kind === 'orphaned'
        ? await this.deps.claims.recordOrphans(this.request.requestId, this.model.id, this.model.upstreamCostMicros, this.model.currency, resolution.predictionIds)
        : [];
    this.deps.metrics.unknownOutcomes.inc({ resolution: orphans.length === 0 ? 'not_created' : 'orphaned' });
    if (orphans.length === 0) {
      this.#log.info({ why }, 'unknown submit resolved: no task was created; submitting again');
      return null;
    }
    await this.#release();
    throw await this.#failed(
      'UPSTREAM_UNKNOWN_OUTCOME',
      `the submit's answer was lost (${why}) and ${orphans.length} unattributed prediction(s) exist; not charged, recorded for reconciliation`,
      { orphanPredictionIds: orphans },
    );
  }

  /** Waits for the webhook of this submit until the prediction timeout; null if none came. */
  async #awaitWebhook(inbox: WebhookInbox, attempt: number, submitStartedAtMs: number) {
    const deadline = submitStartedAtMs + this.deps.timings.predictionTimeoutMs;
    for (;;) {
      const task = await inbox.get(this.request.requestId, attempt);
      if (task !== null || Date.now() >= deadline) return task;
      await sleep(Math.min(500, deadline - Date.now()), this.signal);
    }
  }

  async #poll(predictionId: string, submittedAtMs: number): Promise<{ status: string; outputs: string[]; error: string }> {
    const t = this.deps.timings;
    await sleep(submittedAtMs + t.pollInitialMs - Date.now(), this.signal);
    let intervalMs = t.pollIntervalMs;
    for (;;) {
      if (Date.now() - submittedAtMs > t.predictionTimeoutMs) {
        // We stop waiting; the task may still finish and be billed: record it as owed.
        await this.deps.claims.recordOwed(this.request.requestId, this.model.id, this.model.upstreamCostMicros, this.model.currency, predictionId);
        return { status: 'timeout', outputs: [], error: `no final status after ${t.predictionTimeoutMs} ms` };
      }
      const r = await this.deps.wavespeed.result(predictionId);
      this.deps.metrics.wavespeedRequests.inc({ op: 'result', result: r.kind === 'task' ? r.status : r.kind });
      if (r.kind === 'task' && finalStatuses.has(r.status)) {
        this.deps.metrics.upstreamLatency.observe({ model: this.model.id, status: r.status }, (Date.now() - submittedAtMs) / 1000);
        return r;
      }
      if (r.kind === 'not-found') return { status: 'failed', outputs: [], error: 'prediction not found upstream' };
      let waitMs = intervalMs;
      if (r.kind === 'retry') {
        waitMs = Math.max(intervalMs, r.retryAfterMs ?? 0);
        this.#log.warn({ why: r.why, waitMs }, 'result not readable now; polling again later');
      } else if (r.kind === 'refused') {
        this.#log.error({ status: r.status, message: r.message }, 'Wavespeed refused the result read; polling again later');
      }
      await sleep(waitMs, this.signal);
      intervalMs = Math.min(Math.ceil(intervalMs * 1.5), t.pollMaxMs);
    }
  }

  async #charge(predictionId: string, outputs: string[]): Promise<EnhancementResult> {
    const upstream = {
      amountMicros: this.model.upstreamCostMicros,
      currency: this.model.currency,
      requestId: predictionId,
      model: this.model.id,
    };
    const metadata = { request_id: this.request.requestId };
    const captured = await this.deps.ledger.call(
      'capture',
      { idempotencyKey: keyOf(this.request.requestId, 'capture'), holdId: this.#holdId, credits: this.model.creditsPrice, upstream, metadata },
      this.#log,
      this.signal,
    );
    let creditsCharged = this.model.creditsPrice;
    if (!captured.ok) {
      if (captured.reason !== 'HOLD_EXPIRED') {
        throw await this.#failed('HOLD_CLOSED', `capture refused: ${captured.reason}: ${captured.message}`);
      }
      // The hold lapsed (a worker was gone longer than its TTL): charge directly if the user
      // still has the credits; the result is theirs either way.
      this.#log.warn('hold expired before capture; consuming instead');
      const consumed = await this.deps.ledger.call(
        'consume',
        { idempotencyKey: keyOf(this.request.requestId, 'consume'), userId: this.request.userId, credits: this.model.creditsPrice, upstream, metadata },
        this.#log,
        this.signal,
      );
      if (!consumed.ok) {
        this.deps.metrics.uncharged.inc();
        this.#log.error({ reason: consumed.reason }, 'result delivered uncharged');
        creditsCharged = 0n;
      }
    }
    const result: EnhancementResult = {
      predictionId,
      outputs,
      creditsCharged: creditsCharged.toString(),
      upstreamCostMicros: this.model.upstreamCostMicros.toString(),
    };
    await this.#record({ phase: 'done', result });
    // Counted in micros as a float: Prometheus counters are doubles; exact sums are the audit's.
    this.deps.metrics.upstreamCost.inc({ model: this.model.id, currency: this.model.currency }, Number(this.model.upstreamCostMicros));
    this.#log.info({ creditsCharged: result.creditsCharged }, 'charged');
    return result;
  }

  async #release(): Promise<void> {
    const r = await this.deps.ledger.call(
      'release',
      { idempotencyKey: keyOf(this.request.requestId, 'release'), holdId: this.#holdId, metadata: { request_id: this.request.requestId } },
      this.#log,
      this.signal,
    );
    // Already voided by the sweeper or closed earlier: nothing is held either way.
    if (!r.ok && r.reason !== 'HOLD_EXPIRED' && r.reason !== 'HOLD_CLOSED') throw new Error(`release refused: ${r.reason}: ${r.message}`);
  }
}
