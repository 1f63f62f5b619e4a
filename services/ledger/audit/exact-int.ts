/**
 * Exact integers that stay JS numbers while they are safe (|v| ≤ 2^53 − 1) and become bigint
 * beyond: the audit's replay adds millions of amounts, and a bigint is a heap object per value
 * and per operation, which made garbage collection a fifth of its time. Every operation is exact
 * either way; a result that would leave the safe range is computed in bigint.
 */
export type Int = number | bigint;

/** A decimal string as an Int; anything that is not an integer throws (as BigInt does). */
export function parseInt(v: string): Int {
  const n = Number(v);
  if (Number.isSafeInteger(n) && v.length < 17) return n;
  return BigInt(v);
}

export function add(a: Int, b: Int): Int {
  if (typeof a === 'number' && typeof b === 'number') {
    const r = a + b;
    if (Number.isSafeInteger(r)) return r;
  }
  return norm(BigInt(a) + BigInt(b));
}

export function sub(a: Int, b: Int): Int {
  if (typeof a === 'number' && typeof b === 'number') {
    const r = a - b;
    if (Number.isSafeInteger(r)) return r;
  }
  return norm(BigInt(a) - BigInt(b));
}

/** a == b as integers, whatever their representation. */
export function eq(a: Int, b: Int): boolean {
  // Loose equality compares a number and a bigint by value, exactly.
  // eslint-disable-next-line eqeqeq
  return a == b;
}

/** A bigint back to a number when it fits, so later arithmetic stays fast. */
function norm(v: bigint): Int {
  return v >= -9007199254740991n && v <= 9007199254740991n ? Number(v) : v;
}
