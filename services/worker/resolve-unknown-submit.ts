import type { Logger } from '../lib/logger.js';
import type { PredictionClaims } from './prediction-claims.js';
import { sleep } from './sleep.js';
import type { WavespeedClient } from './wavespeed-client.js';

/**
 * Resolves a submit whose answer never arrived (reset, timeout, 5xx, or a worker that died
 * between sending and recording). Wavespeed has no idempotency key on submits, so a submit is
 * never sent again until this says no task was created:
 *
 * 1. Wait until every submit that started around the same time has settled: after
 *    `submitStartedAtMs + submitTimeoutMs` each of them has either recorded its prediction id
 *    (claimed it in Redis) or become unknown itself.
 * 2. List the account's predictions of this model created in [start − skew, start +
 *    submitTimeout + skew] (Wavespeed's `POST /api/v3/predictions`, 100 a page). At high rates
 *    the window holds many predictions (every other job's, claimed); a window larger than what
 *    we read is `undetermined`: nothing is concluded and nothing is sent again.
 * 3. Drop the ones some job claimed. None left: no task was created by this submit → the
 *    caller may submit again. Some left: a task may be ours, but nothing in the listing ties
 *    a task to a request (no input, no client reference), so handing its output to this user
 *    could hand them someone else's image. They are orphans: the caller releases the hold,
 *    records them as upstream cost we may owe, and fails the job.
 */

export type UnknownResolution =
  | { kind: 'not-created' }
  | { kind: 'orphaned'; predictionIds: string[] }
  /** The window holds more predictions than we read (`pagesMax` pages): nothing can be concluded. */
  | { kind: 'undetermined'; listed: number; total: number };

export interface ResolveDeps {
  wavespeed: WavespeedClient;
  claims: PredictionClaims;
  log: Logger;
  submitTimeoutMs: number;
  signal?: AbortSignal | undefined;
}

/** Allowance for the difference between our clock and Wavespeed's `created_at`. */
const clockSkewMs = 2_000;
const settleMs = 1_000;
/** 100 predictions a page: 20 000 predictions in one window (≈ 100 submits/s over 200 s). */
const pagesMax = 200;

export async function resolveUnknownSubmit(deps: ResolveDeps, model: string, submitStartedAtMs: number): Promise<UnknownResolution> {
  await sleep(submitStartedAtMs + deps.submitTimeoutMs + settleMs - Date.now(), deps.signal);
  const from = submitStartedAtMs - clockSkewMs;
  const to = submitStartedAtMs + deps.submitTimeoutMs + clockSkewMs;
  const ids: string[] = [];
  let total = 0;
  let delayMs = 500;
  for (let page = 1; page <= pagesMax; ) {
    let listed: Awaited<ReturnType<WavespeedClient['listPredictions']>>;
    try {
      listed = await deps.wavespeed.listPredictions(model, from, to, page);
    } catch (error) {
      // The listing is a read: ask again until it answers (the job's own deadline applies).
      deps.log.warn({ err: error, page, retryInMs: delayMs }, 'prediction listing failed; asking again');
      await sleep(delayMs, deps.signal);
      delayMs = Math.min(delayMs * 2, 10_000);
      continue;
    }
    ids.push(...listed.items.map((i) => i.id));
    total = Math.max(total, listed.total);
    if (listed.items.length < 100 || page * 100 >= listed.total) break;
    page += 1;
  }
  if (total > ids.length) return { kind: 'undetermined', listed: ids.length, total };
  const orphans = await deps.claims.unclaimed(ids);
  deps.log.info({ listed: ids.length, unclaimed: orphans.length }, 'unknown submit: listing checked');
  return orphans.length === 0 ? { kind: 'not-created' } : { kind: 'orphaned', predictionIds: orphans };
}
