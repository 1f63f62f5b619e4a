import { invalid, LedgerError } from '../domain/errors.js';
import type { EntryDraft, LedgerState, LotState, TransferDraft } from '../domain/ledger-state.js';
import type { RenewSubscriptionCommand } from '../domain/types.js';
import * as v from '../domain/validate.js';
import { lotAccount, newLot, userAccount } from './grant.js';
import { creditTransfer, expiryTransfers, LotMoney } from './spend.js';

export interface RenewSubscriptionInput {
  idempotencyKey: string;
  userId: string;
  plan: string;
  periodStart?: Date | undefined;
  periodEnd?: Date | undefined;
  credits: bigint;
  amountMicros: bigint;
  currency: string;
  externalRef: string;
  metadata?: Record<string, string>;
}

export function parseRenewSubscription(input: RenewSubscriptionInput, ctx: v.ValidationContext): RenewSubscriptionCommand {
  const periodStart = v.optionalTime(input.periodStart, 'period_start');
  const periodEnd = v.optionalTime(input.periodEnd, 'period_end');
  if (periodStart === null) throw invalid('period_start', 'is required');
  if (periodEnd === null) throw invalid('period_end', 'is required');
  if (periodEnd.getTime() <= periodStart.getTime()) throw invalid('period_end', 'must be after period_start');
  const amountMicros = v.amountMicros(input.amountMicros, 'amount_micros', false);
  const paid = amountMicros > 0n;
  if (!paid && input.currency !== '') throw invalid('currency', 'must be empty when amount_micros is 0');
  if (!paid && input.externalRef !== '') throw invalid('external_ref', 'must be empty when amount_micros is 0');
  return {
    kind: 'RENEW_SUBSCRIPTION',
    idempotencyKey: v.idempotencyKey(input.idempotencyKey),
    userId: v.userId(input.userId),
    plan: v.plan(input.plan),
    periodStart,
    periodEnd,
    credits: v.credits(input.credits),
    amountMicros,
    currency: paid ? v.currency(input.currency, 'currency', ctx) : null,
    externalRef: paid ? v.externalRef(input.externalRef) : null,
    metadata: v.metadata(input.metadata),
  };
}

/**
 * The monthly reset, in one entry: the unheld remainder of the user's earlier subscription
 * lots is expired (credits → platform.credits_expired, their leftover deferred money →
 * breakage), and a new SUBSCRIPTION lot is granted for the period, spendable from
 * period_start and expiring at period_end. Purchased and bonus lots are not touched. Credits
 * under an open hold stay with it; released later after their lot expired, they expire then.
 *
 * A renewal recorded before the new period starts (an invoice paid early) leaves the current
 * period's lot alone until its own expiry, when the expiry sweeper takes its remainder: the
 * user keeps their credits until the period really ends. A renewal recorded after its period
 * ended is still recorded (the money was received); its lot is expired by the sweeper.
 *
 * One renewal per (user, period): a second one for the same period_start is refused under
 * any key, so a redelivered or replayed invoice never grants twice.
 */
export function applyRenewSubscription(state: LedgerState, cmd: RenewSubscriptionCommand): EntryDraft {
  const earlier = state.subscriptionPeriodEntry(cmd.userId, cmd.periodStart);
  if (earlier !== undefined) {
    throw new LedgerError(
      'ALREADY_EXISTS',
      `period_start: user "${cmd.userId}" was already renewed for the period starting ${cmd.periodStart.toISOString()} by entry ${earlier}`,
    );
  }
  if (cmd.externalRef !== null) {
    const purchased = state.externalRefEntry(cmd.externalRef);
    if (purchased !== undefined) {
      throw new LedgerError('ALREADY_EXISTS', `external_ref: "${cmd.externalRef}" was already recorded by entry ${purchased}`);
    }
  }

  const money = new LotMoney(state);
  const transfers: TransferDraft[] = [];
  const lotUpdates: LotState[] = [];
  let expired = 0n;
  const started = state.now.getTime() >= cmd.periodStart.getTime();
  const previous = state
    .liveLots(cmd.userId)
    .filter((lot) => lot.bucket === 'SUBSCRIPTION' && (lot.periodStart === null || lot.periodStart < cmd.periodStart))
    .filter((lot) => started || lot.expiresAt === null || state.isExpired(lot));
  for (const lot of previous) {
    const unheld = state.lotUnheld(lot.accountId);
    if (unheld > 0n) {
      transfers.push(...expiryTransfers(state, money, lot.accountId, unheld));
      expired += unheld;
    }
    // With nothing held, the lot is finished: the expiry sweeper need not look at it again.
    if (state.account(lot.accountId).debitsPending === 0n) lotUpdates.push({ ...lot, expirySwept: true });
  }

  const lotId = state.allocateAccountId();
  const deferredId = cmd.amountMicros > 0n ? state.allocateAccountId() : null;
  transfers.push(creditTransfer('POSTED', state.platform.issued, lotId, cmd.credits));
  const newAccounts = [lotAccount(lotId, cmd.userId)];
  if (deferredId !== null && cmd.currency !== null) {
    transfers.push({
      kind: 'POSTED',
      debit: state.money(cmd.currency).clearing,
      credit: deferredId,
      amount: cmd.amountMicros,
      unit: cmd.currency,
      pending: null,
    });
    newAccounts.push(userAccount(deferredId, `user:${cmd.userId}:lot:${lotId}:deferred`, cmd.currency, 'DEFERRED', cmd.userId));
  }
  return {
    kind: 'RENEW_SUBSCRIPTION',
    userId: cmd.userId,
    holdId: null,
    effectiveAt: cmd.periodStart,
    policyVersion: null,
    allocation: null,
    metadata: {
      ...cmd.metadata,
      plan: cmd.plan,
      period_start: cmd.periodStart.toISOString(),
      period_end: cmd.periodEnd.toISOString(),
      ...(cmd.externalRef !== null ? { external_ref: cmd.externalRef } : {}),
    },
    transfers,
    newAccounts,
    newLot: newLot(state, {
      accountId: lotId,
      userId: cmd.userId,
      bucket: 'SUBSCRIPTION',
      grantedCredits: cmd.credits,
      effectiveAt: cmd.periodStart,
      expiresAt: cmd.periodEnd,
      priority: 0,
      costBasisMicros: cmd.amountMicros,
      currency: cmd.currency,
      deferredAccountId: deferredId,
      externalRef: cmd.externalRef,
      plan: cmd.plan,
      periodStart: cmd.periodStart,
    }),
    lotUpdates: money.lotUpdates(lotUpdates),
    reversesSeq: null,
    hold: null,
    result: { lotId, expiredCredits: expired },
  };
}
