import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { allocate, compareDrawdown, recognizedMicros, type DrawableLot } from './drawdown.js';
import type { Bucket } from './types.js';

/** Unit tests of the drawdown policy (ledger README §3): pure functions, no database. */

const day = 86_400_000;
const t0 = Date.parse('2026-11-24T12:00:00.000Z');

function lot(over: Partial<DrawableLot> & { lotId: bigint }): DrawableLot {
  return {
    bucket: 'PURCHASED',
    expiresAt: null,
    priority: 0,
    entrySeq: over.lotId,
    available: 10n,
    ...over,
  };
}

const order = (lots: DrawableLot[]): bigint[] => [...lots].sort(compareDrawdown).map((l) => l.lotId);

/** Every permutation of a small list, so that the order does not depend on the input order. */
function permutations<T>(xs: readonly T[]): T[][] {
  if (xs.length <= 1) return [[...xs]];
  return xs.flatMap((x, i) => permutations([...xs.slice(0, i), ...xs.slice(i + 1)]).map((rest) => [x, ...rest]));
}

function expectOrder(lots: DrawableLot[], expected: bigint[]): void {
  for (const p of permutations(lots)) expect(order(p)).toEqual(expected);
}

describe('compareDrawdown', () => {
  it('spends the soonest expiry first', () => {
    expectOrder(
      [
        lot({ lotId: 1n, expiresAt: new Date(t0 + 3 * day) }),
        lot({ lotId: 2n, expiresAt: new Date(t0 + 1 * day) }),
        lot({ lotId: 3n, expiresAt: new Date(t0 + 2 * day) }),
      ],
      [2n, 3n, 1n],
    );
  });

  it('spends never-expiring lots last, whatever their bucket, priority or age', () => {
    expectOrder(
      [
        lot({ lotId: 1n, bucket: 'SUBSCRIPTION', expiresAt: null, priority: -100, entrySeq: 1n }),
        lot({ lotId: 2n, bucket: 'PURCHASED', expiresAt: new Date(t0 + 365 * day), priority: 100, entrySeq: 9n }),
      ],
      [2n, 1n],
    );
  });

  it('at equal expiry spends SUBSCRIPTION, then BONUS, then PURCHASED', () => {
    const at = new Date(t0 + day);
    const lots = [
      lot({ lotId: 1n, bucket: 'PURCHASED', expiresAt: at, entrySeq: 1n }),
      lot({ lotId: 2n, bucket: 'BONUS', expiresAt: at, entrySeq: 2n }),
      lot({ lotId: 3n, bucket: 'SUBSCRIPTION', expiresAt: at, entrySeq: 3n }),
    ];
    expectOrder(lots, [3n, 2n, 1n]);
    // The same for never-expiring lots.
    expectOrder(
      lots.map((l) => ({ ...l, expiresAt: null })),
      [3n, 2n, 1n],
    );
  });

  it('bucket outranks priority, and a lower priority number is spent first within a bucket', () => {
    expectOrder(
      [
        lot({ lotId: 1n, bucket: 'BONUS', priority: 5, entrySeq: 1n }),
        lot({ lotId: 2n, bucket: 'BONUS', priority: -3, entrySeq: 2n }),
        lot({ lotId: 3n, bucket: 'PURCHASED', priority: -1000, entrySeq: 3n }),
        lot({ lotId: 4n, bucket: 'BONUS', priority: 0, entrySeq: 4n }),
      ],
      [2n, 4n, 1n, 3n],
    );
  });

  it('at equal expiry, bucket and priority spends the older lot (lower entry sequence) first', () => {
    expectOrder(
      [
        lot({ lotId: 10n, entrySeq: 30n }),
        lot({ lotId: 20n, entrySeq: 10n }),
        lot({ lotId: 30n, entrySeq: 20n }),
      ],
      [20n, 30n, 10n],
    );
  });

  it('falls back to the lot id when everything else ties', () => {
    expectOrder([lot({ lotId: 7n, entrySeq: 1n }), lot({ lotId: 3n, entrySeq: 1n })], [3n, 7n]);
  });

  it('is a total order consistent with an independent sort key (property)', () => {
    const bucketArb = fc.constantFrom<Bucket>('SUBSCRIPTION', 'BONUS', 'PURCHASED');
    const lotArb = fc.record({
      bucket: bucketArb,
      expires: fc.option(fc.integer({ min: 0, max: 4 }), { nil: null }),
      priority: fc.integer({ min: -2, max: 2 }),
      entrySeq: fc.bigInt(1n, 5n),
    });
    fc.assert(
      fc.property(fc.array(lotArb, { minLength: 1, maxLength: 8 }), (raw) => {
        const lots = raw.map((r, i) =>
          lot({
            lotId: BigInt(i + 1),
            bucket: r.bucket,
            expiresAt: r.expires === null ? null : new Date(t0 + r.expires * day),
            priority: r.priority,
            entrySeq: r.entrySeq,
          }),
        );
        const rank = { SUBSCRIPTION: 0, BONUS: 1, PURCHASED: 2 } as const;
        const key = (l: DrawableLot) => [
          l.expiresAt === null ? Number.MAX_SAFE_INTEGER : l.expiresAt.getTime(),
          rank[l.bucket],
          l.priority,
          Number(l.entrySeq),
          Number(l.lotId),
        ];
        const expected = [...lots]
          .sort((a, b) => {
            const ka = key(a);
            const kb = key(b);
            for (let i = 0; i < ka.length; i += 1) if (ka[i] !== kb[i]) return ka[i]! - kb[i]!;
            return 0;
          })
          .map((l) => l.lotId);
        expect(order(lots)).toEqual(expected);
        expect(order([...lots].reverse())).toEqual(expected);
      }),
      { numRuns: 300 },
    );
  });
});

describe('allocate', () => {
  const lots = [
    lot({ lotId: 1n, bucket: 'PURCHASED', available: 100n, entrySeq: 1n }),
    lot({ lotId: 2n, bucket: 'BONUS', available: 5n, entrySeq: 2n }),
    lot({ lotId: 3n, bucket: 'SUBSCRIPTION', available: 7n, expiresAt: new Date(t0 + day), entrySeq: 3n }),
  ];

  it('walks the lots in drawdown order, draining each before the next', () => {
    expect(allocate(lots, 3n)).toEqual([{ lotId: 3n, credits: 3n }]);
    expect(allocate(lots, 7n)).toEqual([{ lotId: 3n, credits: 7n }]);
    expect(allocate(lots, 10n)).toEqual([
      { lotId: 3n, credits: 7n },
      { lotId: 2n, credits: 3n },
    ]);
    expect(allocate(lots, 112n)).toEqual([
      { lotId: 3n, credits: 7n },
      { lotId: 2n, credits: 5n },
      { lotId: 1n, credits: 100n },
    ]);
  });

  it('is all-or-nothing: one credit more than available allocates nothing', () => {
    expect(allocate(lots, 113n)).toBeNull();
    expect(allocate([], 1n)).toBeNull();
    expect(allocate([lot({ lotId: 1n, available: 0n })], 1n)).toBeNull();
  });

  it('does not modify its input', () => {
    const copy = lots.map((l) => ({ ...l }));
    allocate(lots, 50n);
    expect(lots).toEqual(copy);
  });

  it('skips lots with nothing available (zero or negative), even when they come first', () => {
    const withEmpty = [
      lot({ lotId: 1n, bucket: 'SUBSCRIPTION', available: 0n, expiresAt: new Date(t0 + day) }),
      lot({ lotId: 2n, bucket: 'BONUS', available: -4n, expiresAt: new Date(t0 + day) }),
      lot({ lotId: 3n, bucket: 'PURCHASED', available: 9n }),
    ];
    expect(allocate(withEmpty, 4n)).toEqual([{ lotId: 3n, credits: 4n }]);
    expect(allocate(withEmpty, 9n)).toEqual([{ lotId: 3n, credits: 9n }]);
    expect(allocate(withEmpty, 10n)).toBeNull();
  });

  it('allocates exactly the credits asked for, from available credits only, in order (property)', () => {
    const lotsArb = fc.array(
      fc.record({
        bucket: fc.constantFrom<Bucket>('SUBSCRIPTION', 'BONUS', 'PURCHASED'),
        expires: fc.option(fc.integer({ min: 1, max: 5 }), { nil: null }),
        priority: fc.integer({ min: -1, max: 1 }),
        available: fc.bigInt(0n, 50n),
      }),
      { maxLength: 8 },
    );
    fc.assert(
      fc.property(lotsArb, fc.bigInt(1n, 300n), (raw, credits) => {
        const input = raw.map((r, i) =>
          lot({
            lotId: BigInt(i + 1),
            bucket: r.bucket,
            expiresAt: r.expires === null ? null : new Date(t0 + r.expires * day),
            priority: r.priority,
            available: r.available,
          }),
        );
        const total = input.reduce((s, l) => s + (l.available > 0n ? l.available : 0n), 0n);
        const result = allocate(input, credits);
        if (credits > total) {
          expect(result).toBeNull();
          return;
        }
        expect(result).not.toBeNull();
        const allocation = result!;
        expect(allocation.reduce((s, a) => s + a.credits, 0n)).toBe(credits);
        const byId = new Map(input.map((l) => [l.lotId, l]));
        for (const a of allocation) {
          expect(a.credits).toBeGreaterThan(0n);
          expect(a.credits).toBeLessThanOrEqual(byId.get(a.lotId)!.available);
        }
        expect(new Set(allocation.map((a) => a.lotId)).size).toBe(allocation.length);
        // Every lot before the last one drawn, in drawdown order, is drained; none after it is touched.
        const ordered = [...input].sort(compareDrawdown).filter((l) => l.available > 0n);
        const drawn = ordered.slice(0, allocation.length);
        expect(allocation.map((a) => a.lotId)).toEqual(drawn.map((l) => l.lotId));
        for (let i = 0; i < allocation.length - 1; i += 1) expect(allocation[i]!.credits).toBe(drawn[i]!.available);
      }),
      { numRuns: 300 },
    );
  });
});

describe('recognizedMicros', () => {
  it('is proportional to the share of the remaining balance taken, rounded down', () => {
    expect(recognizedMicros(1_000_000n, 10n, 1n)).toBe(100_000n);
    expect(recognizedMicros(1_000_000n, 10n, 5n)).toBe(500_000n);
    expect(recognizedMicros(100n, 3n, 1n)).toBe(33n);
    expect(recognizedMicros(100n, 3n, 2n)).toBe(66n);
    expect(recognizedMicros(299_990_000n, 500n, 1n)).toBe(599_980n);
    expect(recognizedMicros(299_990_000n, 500n, 250n)).toBe(149_995_000n);
    expect(recognizedMicros(0n, 500n, 7n)).toBe(0n);
  });

  it('recognises exactly what is left on the last credits', () => {
    expect(recognizedMicros(101n, 7n, 7n)).toBe(101n);
    expect(recognizedMicros(1n, 1n, 1n)).toBe(1n);
    expect(recognizedMicros(299_990_000n, 500n, 500n)).toBe(299_990_000n);
  });

  it('$299.99 for 500 credits consumed one by one recognises exactly 299 990 000 micros', () => {
    let deferred = 299_990_000n;
    let recognized = 0n;
    for (let balance = 500n; balance > 0n; balance -= 1n) {
      const r = recognizedMicros(deferred, balance, 1n);
      expect(r).toBe(599_980n);
      recognized += r;
      deferred -= r;
    }
    expect(recognized).toBe(299_990_000n);
    expect(deferred).toBe(0n);
  });

  it('a price that does not divide evenly still recognises it all, to the micro', () => {
    // $10.00 for 3 credits: 3 333 333.33… micros per credit.
    let deferred = 10_000_000n;
    const parts: bigint[] = [];
    for (let balance = 3n; balance > 0n; balance -= 1n) {
      const r = recognizedMicros(deferred, balance, 1n);
      parts.push(r);
      deferred -= r;
    }
    expect(parts).toEqual([3_333_333n, 3_333_333n, 3_333_334n]);
    expect(deferred).toBe(0n);
  });

  it('any split of a lot into pieces recognises exactly the price (property)', () => {
    fc.assert(
      fc.property(
        fc.bigInt(0n, 1_000_000_000_000_000n),
        fc.bigInt(1n, 1_000_000n),
        fc.array(fc.bigInt(1n, 1_000_000n), { minLength: 1, maxLength: 40 }),
        (price, granted, pieces) => {
          let deferred = price;
          let balance = granted;
          let recognized = 0n;
          for (const piece of [...pieces, granted]) {
            if (balance === 0n) break;
            const take = piece < balance ? piece : balance;
            const r = recognizedMicros(deferred, balance, take);
            // Never more than the pro-rata share, never negative, never more than what is left.
            expect(r).toBeGreaterThanOrEqual(0n);
            expect(r * balance).toBeLessThanOrEqual(deferred * take);
            expect(r).toBeLessThanOrEqual(deferred);
            recognized += r;
            deferred -= r;
            balance -= take;
          }
          expect(balance).toBe(0n);
          expect(recognized).toBe(price);
          expect(deferred).toBe(0n);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('refuses credits outside (0, balance]', () => {
    expect(() => recognizedMicros(100n, 10n, 0n)).toThrow();
    expect(() => recognizedMicros(100n, 10n, -1n)).toThrow();
    expect(() => recognizedMicros(100n, 10n, 11n)).toThrow();
    expect(() => recognizedMicros(100n, 0n, 1n)).toThrow();
  });
});
