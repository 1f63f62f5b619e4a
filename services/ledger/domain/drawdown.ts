import type { Allocation, Bucket } from './types.js';

/**
 * The drawdown policy (ledger README §3). Its version is recorded on every debit entry with the
 * allocation it chose, so an auditor can replay the choice. Change the order only together with
 * the version.
 */
export const drawdownPolicyVersion = 'drawdown-v1';

const bucketRank: Record<Bucket, number> = { SUBSCRIPTION: 0, BONUS: 1, PURCHASED: 2 };

export interface DrawableLot {
  lotId: bigint;
  bucket: Bucket;
  expiresAt: Date | null;
  priority: number;
  /** The journal sequence that created the lot: lower is older. */
  entrySeq: bigint;
  available: bigint;
}

/**
 * Soonest expiry first (never-expiring last), then BONUS before PURCHASED (SUBSCRIPTION first of
 * all), then lowest priority number, then the oldest lot, then the lowest lot id.
 */
export function compareDrawdown(a: DrawableLot, b: DrawableLot): number {
  const ea = a.expiresAt?.getTime() ?? Number.POSITIVE_INFINITY;
  const eb = b.expiresAt?.getTime() ?? Number.POSITIVE_INFINITY;
  if (ea !== eb) return ea < eb ? -1 : 1;
  const ra = bucketRank[a.bucket];
  const rb = bucketRank[b.bucket];
  if (ra !== rb) return ra - rb;
  if (a.priority !== b.priority) return a.priority - b.priority;
  if (a.entrySeq !== b.entrySeq) return a.entrySeq < b.entrySeq ? -1 : 1;
  if (a.lotId !== b.lotId) return a.lotId < b.lotId ? -1 : 1;
  return 0;
}

/**
 * Chooses which lots pay for `credits`, walking them in drawdown order. Returns null when the
 * lots together hold fewer available credits than asked for: a debit is all or nothing.
 */
export function allocate(lots: readonly DrawableLot[], credits: bigint): Allocation[] | null {
  const ordered = [...lots].sort(compareDrawdown);
  const allocation: Allocation[] = [];
  let remaining = credits;
  for (const lot of ordered) {
    if (remaining === 0n) break;
    if (lot.available <= 0n) continue;
    const take = lot.available < remaining ? lot.available : remaining;
    allocation.push({ lotId: lot.lotId, credits: take });
    remaining -= take;
  }
  return remaining === 0n ? allocation : null;
}

/**
 * Revenue recognised when `credits` leave a lot: the lot's remaining deferred money in
 * proportion to the credits taken from its remaining balance, rounded down. Spending the last
 * credit of a lot therefore recognises exactly what is left, and a lot recognises in total
 * exactly what was paid for it — no rounding drift.
 */
export function recognizedMicros(deferredMicros: bigint, lotBalance: bigint, credits: bigint): bigint {
  if (credits <= 0n || lotBalance <= 0n || credits > lotBalance) {
    throw new Error(`recognizedMicros: credits ${credits} outside (0, ${lotBalance}]`);
  }
  return (deferredMicros * credits) / lotBalance;
}
