import type { Redis } from 'ioredis';
import { sleep } from './sleep.js';

/**
 * A token bucket in Redis, shared by every worker process, taken once per Wavespeed submit: the
 * account tier's submits per minute, refilled continuously, holding at most a tenth of a
 * second's worth. BullMQ's limiter already spaces job starts, but a job's submit follows its
 * Reserve, whose latency varies (the ledger batches commands), so starts spaced evenly can
 * still submit in a bunch; this bucket sits right before the request and keeps submits within
 * the tier whatever happened in between.
 */

// KEYS[1]: the bucket (hash t = tokens, ts = last refill, ms). ARGV[1]: tokens per ms,
// ARGV[2]: capacity. Uses the Redis server's clock, so all workers share one time base.
// Returns 0 when a token was taken, else the ms until one will be available. No locks beyond
// the script's own atomicity; the key expires when idle.
const takeScript = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local tokens = tonumber(redis.call('HGET', KEYS[1], 't') or capacity)
local last = tonumber(redis.call('HGET', KEYS[1], 'ts') or now)
tokens = math.min(capacity, tokens + math.max(0, now - last) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.ceil((1 - tokens) / rate)
end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], 60000)
return wait
`;

type WithTake = Redis & { enhancementSubmitToken(key: string, ratePerMs: string, capacity: string): Promise<number> };

export class SubmitRateLimiter {
  readonly #redis: WithTake;
  readonly #key: string;
  readonly #ratePerMs: string;
  readonly #capacity: string;

  constructor(redis: Redis, prefix: string, ratePerMin: number) {
    if (!('enhancementSubmitToken' in redis)) redis.defineCommand('enhancementSubmitToken', { numberOfKeys: 1, lua: takeScript });
    this.#redis = redis as WithTake;
    this.#key = `${prefix}:enhancements:submit-bucket`;
    this.#ratePerMs = String(ratePerMin / 60_000);
    this.#capacity = String(Math.max(1, Math.floor(ratePerMin / 600)));
  }

  /** Waits until a submit may be sent (throws HandBack if `signal` aborts meanwhile). */
  async acquire(signal?: AbortSignal): Promise<void> {
    for (;;) {
      const waitMs = await this.#redis.enhancementSubmitToken(this.#key, this.#ratePerMs, this.#capacity);
      if (waitMs === 0) return;
      await sleep(waitMs, signal);
    }
  }
}
