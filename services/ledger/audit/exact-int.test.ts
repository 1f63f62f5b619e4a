import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { add, eq, parseInt, sub } from './exact-int.js';

// Exact integers as numbers while safe, bigint beyond (exact-int.ts): every result equals bigint arithmetic.

describe('exact-int', () => {
  it('crosses 2^53 both ways without losing a unit', () => {
    const max = 9007199254740991;
    expect(add(max, 1)).toBe(9007199254740992n);
    expect(sub(add(max, 1), 1)).toBe(max);
    expect(parseInt('9007199254740993')).toBe(9007199254740993n);
    expect(parseInt('42')).toBe(42);
    expect(eq(5, 5n)).toBe(true);
    expect(eq(5, 6n)).toBe(false);
    expect(() => parseInt('12a')).toThrow();
  });

  it('agrees with bigint arithmetic (property)', () => {
    const big = fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n });
    fc.assert(
      fc.property(big, big, (a, b) => {
        const x = parseInt(a.toString());
        const y = parseInt(b.toString());
        expect(BigInt(add(x, y))).toBe(a + b);
        expect(BigInt(sub(x, y))).toBe(a - b);
        expect(eq(x, y)).toBe(a === b);
      }),
    );
  });
});
