import type { Redis } from 'ioredis';

/**
 * Which Wavespeed predictions belong to a job, shared by every worker process through Redis.
 * A prediction is claimed the moment its submit answers; an unknown submit is resolved by
 * looking for predictions nobody claimed (see resolve-unknown-submit.ts). Predictions that were
 * created but cannot be attributed are recorded as orphans: upstream cost we may owe, for the
 * reconciliation against Wavespeed's billing.
 */
export class PredictionClaims {
  /** Wavespeed keeps predictions 7 days; claims outlive them by a day. */
  static readonly ttlS = 8 * 24 * 3600;

  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  #claimKey(predictionId: string): string {
    return `${this.prefix}:enhancements:prediction:${predictionId}`;
  }

  get orphansKey(): string {
    return `${this.prefix}:enhancements:upstream-orphans`;
  }

  async claim(predictionId: string, requestId: string): Promise<void> {
    // SET key requestId EX ttl: one round trip; a re-claim by the same job is harmless.
    await this.redis.set(this.#claimKey(predictionId), requestId, 'EX', PredictionClaims.ttlS);
  }

  /** The ids among `predictionIds` that no job has claimed. */
  async unclaimed(predictionIds: string[]): Promise<string[]> {
    if (predictionIds.length === 0) return [];
    // EXISTS per id, pipelined: one round trip, no locks; the answer is a snapshot.
    const pipeline = this.redis.pipeline();
    for (const id of predictionIds) pipeline.exists(this.#claimKey(id));
    const answers = (await pipeline.exec()) ?? [];
    return predictionIds.filter((_, i) => answers[i]?.[1] === 0);
  }

  /**
   * Attributes predictions an unknown submit may have created to `requestId`, as upstream cost
   * we may owe. Each is claimed with SET NX first, so a prediction is attributed to one request
   * only, even when two unknown submits look at the same listing; returns the ones this call
   * attributed (an empty list: others had taken them all).
   */
  async recordOrphans(requestId: string, model: string, costMicros: bigint, currency: string, predictionIds: string[]): Promise<string[]> {
    if (predictionIds.length === 0) return [];
    // SET claim NX per prediction, pipelined: exactly one caller wins each prediction.
    const claimPipeline = this.redis.pipeline();
    for (const id of predictionIds) claimPipeline.set(this.#claimKey(id), `orphan:${requestId}`, 'EX', PredictionClaims.ttlS, 'NX');
    const answers = (await claimPipeline.exec()) ?? [];
    const won = predictionIds.filter((_, i) => answers[i]?.[1] === 'OK');
    if (won.length === 0) return [];
    const at = new Date().toISOString();
    // HSET into the orphans hash: the record the reconciliation reads.
    await this.redis.hset(
      this.orphansKey,
      Object.fromEntries(won.map((id) => [id, JSON.stringify({ requestId, model, expectedCostMicros: costMicros.toString(), currency, at })])),
    );
    return won;
  }

  /** Records a prediction of this request we stopped waiting for: its cost may still be billed. */
  async recordOwed(requestId: string, model: string, costMicros: bigint, currency: string, predictionId: string): Promise<void> {
    // HSETNX: the first record of a prediction stands.
    await this.redis.hsetnx(
      this.orphansKey,
      predictionId,
      JSON.stringify({ requestId, model, expectedCostMicros: costMicros.toString(), currency, at: new Date().toISOString() }),
    );
  }

  /**
   * Records an unknown submit whose window could not be read in full: the reconciliation looks
   * for an unattributed billed prediction of `model` created in the window.
   */
  async recordUndetermined(requestId: string, model: string, submitStartedAtMs: number, submitTimeoutMs: number): Promise<void> {
    // HSETNX under a window: key, beside the predictions.
    await this.redis.hsetnx(
      this.orphansKey,
      `window:${requestId}`,
      JSON.stringify({ requestId, model, from: new Date(submitStartedAtMs).toISOString(), to: new Date(submitStartedAtMs + submitTimeoutMs).toISOString() }),
    );
  }

  async orphans(): Promise<Record<string, { requestId: string; model: string; expectedCostMicros?: string; currency?: string; at?: string; from?: string; to?: string }>> {
    const all = await this.redis.hgetall(this.orphansKey);
    return Object.fromEntries(Object.entries(all).map(([k, v]) => [k, JSON.parse(v)]));
  }
}
