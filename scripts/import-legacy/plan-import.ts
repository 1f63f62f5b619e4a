import { createHash } from 'node:crypto';
import type { LegacyExport } from './legacy-rows.js';

/**
 * Turns a validated export into ledger commands. Every key derives from the legacy user id, so
 * running the import again sends the same requests and the ledger replays them: nothing
 * changes. Opening balances:
 * - purchased credits: a Purchase whose cost basis is the user's completed purchases pro rata
 *   (what the remaining credits were paid for), so their revenue is recognised as they are
 *   spent; a Grant when there is no payment on record;
 * - subscription credits: a free RenewSubscription for the current period (plan, start, end),
 *   so the lot expires at the period's end and a later invoice for the same period is refused
 *   instead of granting it twice (none when the period has ended: the reset took them);
 * - the rest of current_balance: a BONUS Grant.
 */
export type PlannedCommand =
  | {
      method: 'renewSubscription';
      request: {
        idempotencyKey: string;
        userId: string;
        credits: bigint;
        plan: string;
        periodStart: Date;
        periodEnd: Date;
        metadata: Record<string, string>;
      };
    }
  | {
      method: 'grant';
      request: {
        idempotencyKey: string;
        userId: string;
        credits: bigint;
        bucket: 'SUBSCRIPTION' | 'BONUS' | 'PURCHASED';
        expiresAt?: Date;
        metadata: Record<string, string>;
      };
    }
  | {
      method: 'purchase';
      request: {
        idempotencyKey: string;
        userId: string;
        credits: bigint;
        amountMicros: bigint;
        currency: string;
        externalRef: string;
        metadata: Record<string, string>;
      };
    };

/**
 * The user id as it appears in keys: itself when short enough for a 128-character key, else a
 * digest of it (the key must stay derived from the legacy id alone, so reruns match).
 */
function keyId(userId: string): string {
  return userId.length <= 96 ? userId : `h-${createHash('sha256').update(userId).digest('hex').slice(0, 40)}`;
}

/** Stripe cents to ledger micros: exact (ledger README §2). */
const microsPerCent = 10_000n;

export function planImport(exported: LegacyExport, now: Date): PlannedCommand[] {
  const paid = new Map<string, { credits: bigint; micros: bigint; currency: string; count: number }>();
  for (const p of exported.purchases) {
    if (p.status !== 'completed') continue;
    const sum = paid.get(p.userId) ?? { credits: 0n, micros: 0n, currency: p.currency, count: 0 };
    sum.credits += p.credits;
    sum.micros += p.amountCents * microsPerCent;
    sum.count += 1;
    paid.set(p.userId, sum);
  }
  const commands: PlannedCommand[] = [];
  for (const u of exported.users) {
    const key = (part: string) => `legacy:${keyId(u.userId)}:${part}`;
    const source = { source: 'legacy-import', legacy_line: String(u.line) };
    if (u.purchased > 0n) {
      const history = paid.get(u.userId);
      const cost = history && history.credits > 0n ? (history.micros * u.purchased) / history.credits : 0n;
      const costMicros = history && cost > history.micros ? history.micros : cost;
      if (history && costMicros > 0n) {
        commands.push({
          method: 'purchase',
          request: {
            idempotencyKey: key('purchased'),
            userId: u.userId,
            credits: u.purchased,
            amountMicros: costMicros,
            currency: history.currency,
            externalRef: key('purchased'),
            metadata: { ...source, legacy_purchases: String(history.count) },
          },
        });
      } else {
        commands.push({
          method: 'grant',
          request: { idempotencyKey: key('purchased'), userId: u.userId, credits: u.purchased, bucket: 'PURCHASED', metadata: source },
        });
      }
    }
    if (u.subscription > 0n && u.periodStart !== null && u.periodEnd !== null && u.periodEnd > now) {
      commands.push({
        method: 'renewSubscription',
        request: {
          idempotencyKey: key('subscription'),
          userId: u.userId,
          credits: u.subscription,
          plan: u.plan || 'legacy',
          periodStart: u.periodStart,
          periodEnd: u.periodEnd,
          metadata: source,
        },
      });
    }
    const bonus = u.current - u.purchased - u.subscription;
    if (bonus > 0n) {
      commands.push({
        method: 'grant',
        request: { idempotencyKey: key('bonus'), userId: u.userId, credits: bonus, bucket: 'BONUS', metadata: source },
      });
    }
  }
  return commands;
}
