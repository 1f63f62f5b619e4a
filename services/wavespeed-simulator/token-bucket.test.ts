import { describe, expect, it } from 'vitest';
import { FaultTable } from './faults.js';
import { TokenBucket } from './token-bucket.js';

describe('token bucket', () => {
  it('allows the burst, then one token per 60/rate seconds, and says when the next comes', () => {
    let now = 0;
    const bucket = new TokenBucket(60, 3, () => now);
    expect([bucket.take(), bucket.take(), bucket.take()].every((t) => t.ok)).toBe(true);
    const refused = bucket.take();
    expect(refused).toEqual({ ok: false, retryAfterMs: 1_000 });
    now = 999;
    expect(bucket.take().ok).toBe(false);
    now = 1_000;
    expect(bucket.take().ok).toBe(true);
    now = 100_000; // refills only up to capacity
    expect([bucket.take(), bucket.take(), bucket.take(), bucket.take()].map((t) => t.ok)).toEqual([true, true, true, false]);
  });
});

describe('fault table', () => {
  it('applies a rule to the next N matching requests, by operation, model and kind, in order', () => {
    const faults = new FaultTable();
    faults.add([
      { op: 'submit', model: 'a/b', action: { kind: 'status', status: 503 }, count: 2 },
      { op: 'submit', action: { kind: 'reset-after-create' }, count: 1 },
      { op: 'result', action: { kind: 'delay', ms: 5 }, count: -1 },
    ]);
    expect(faults.take('submit', 'x/y', ['status'])).toBeNull();
    expect(faults.take('submit', 'a/b', ['status'])).toEqual({ kind: 'status', status: 503 });
    expect(faults.take('submit', 'a/b', ['status'])).toEqual({ kind: 'status', status: 503 });
    expect(faults.take('submit', 'a/b', ['status'])).toBeNull();
    expect(faults.take('submit', 'x/y', ['reset-after-create'])).toEqual({ kind: 'reset-after-create' });
    expect(faults.take('submit', 'x/y', ['reset-after-create'])).toBeNull();
    for (let i = 0; i < 5; i++) expect(faults.take('result', null, ['delay'])).toEqual({ kind: 'delay', ms: 5 });
    expect(faults.size).toBe(1);
  });
});
