import { describe, expect, it } from 'vitest';
import { parseWorkerConfig } from './config.js';
import { limiterFor } from './enhancement-worker.js';
import { failureReasonOf } from './job-types.js';

const minimal = { LEDGER_TOKEN: 'worker-token-0123456789', WAVESPEED_API_KEY: 'ws-key-123' };

describe('worker configuration', () => {
  it('needs only the two secrets; everything else has a default', () => {
    const c = parseWorkerConfig(minimal);
    expect(c).toMatchObject({
      redisUrl: 'redis://127.0.0.1:6379',
      ledgerAddr: '127.0.0.1:50051',
      ratePerMin: null,
      queuePrefix: 'bull',
      wavespeed: { baseUrl: 'https://api.wavespeed.ai', apiKey: 'ws-key-123' },
    });
    expect(c.flow.pollInitialMs).toBe(2_000);
  });

  it('refuses missing secrets and bad values, naming each variable', () => {
    expect(() => parseWorkerConfig({})).toThrow(/LEDGER_TOKEN[\s\S]*WAVESPEED_API_KEY/);
    expect(() => parseWorkerConfig({ ...minimal, WORKER_CONCURRENCY: '0' })).toThrow(/WORKER_CONCURRENCY/);
    expect(() => parseWorkerConfig({ ...minimal, WAVESPEED_RATE_PER_MIN: '1.5' })).toThrow(/WAVESPEED_RATE_PER_MIN/);
    expect(() => parseWorkerConfig({ ...minimal, LEDGER_ADDR: 'nohost' })).toThrow(/LEDGER_ADDR/);
    expect(() => parseWorkerConfig({ ...minimal, WAVESPEED_BASE_URL: 'ftp://x' })).toThrow(/WAVESPEED_BASE_URL/);
    expect(() => parseWorkerConfig({ ...minimal, REDIS_URL: 'http://x' })).toThrow(/REDIS_URL/);
  });
});

describe('rate limiter', () => {
  it('spreads the tier over tenths of a second and never exceeds it', () => {
    for (const rate of [1, 10, 59, 60, 100, 600, 1_000, 5_000, 100_000]) {
      const { max, duration } = limiterFor(rate);
      expect(max).toBeGreaterThanOrEqual(1);
      expect((max * 60_000) / duration).toBeLessThanOrEqual(rate);
      // Within 2% of the tier (rounding of the window).
      expect((max * 60_000) / duration).toBeGreaterThan(rate * 0.98);
    }
    expect(limiterFor(600)).toEqual({ max: 1, duration: 100 });
  });
});

describe('failure reasons', () => {
  it('reads the reason at the start of a failedReason', () => {
    expect(failureReasonOf('INSUFFICIENT_CREDITS: 4 credits needed')).toBe('INSUFFICIENT_CREDITS');
    expect(failureReasonOf('connect ECONNREFUSED')).toBe('RETRIES_EXHAUSTED');
    expect(failureReasonOf(undefined)).toBe('RETRIES_EXHAUSTED');
  });
});
