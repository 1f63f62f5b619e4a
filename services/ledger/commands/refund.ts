import { invalid, LedgerError, notFound, refused } from '../domain/errors.js';
import type { EntryDraft, LedgerState, LotState, TransferDraft } from '../domain/ledger-state.js';
import type { RefundCommand, RefundReason } from '../domain/types.js';
import * as v from '../domain/validate.js';
import { breakageTransfers, creditTransfer, LotMoney, refundTransfers } from './spend.js';

export interface RefundInput {
  idempotencyKey: string;
  externalRef: string;
  /** This refund's amount; 0 (proto's unset) when a target is given. */
  amountMicros: bigint;
  /** The cumulative total refunds should reach; 0 (unset) for an incremental refund. */
  refundedMicrosTarget?: bigint;
  reason: RefundReason | null;
  metadata?: Record<string, string>;
}

export function parseRefund(input: RefundInput): RefundCommand {
  if (input.reason === null) throw invalid('reason', 'is required (REFUND or DISPUTE)');
  const idempotencyKey = v.idempotencyKey(input.idempotencyKey);
  const externalRef = v.externalRef(input.externalRef);
  const target = input.refundedMicrosTarget ?? 0n;
  if (target === 0n) {
    return {
      kind: 'REFUND',
      idempotencyKey,
      externalRef,
      amountMicros: v.amountMicros(input.amountMicros, 'amount_micros', true),
      reason: input.reason,
      metadata: v.metadata(input.metadata),
    };
  }
  if (input.amountMicros !== 0n) {
    throw invalid('refunded_micros_target', 'and amount_micros are exclusive: give this refund\'s amount or the total to reach, not both');
  }
  if (input.reason !== 'REFUND') {
    throw invalid('refunded_micros_target', 'is only for reason REFUND (a dispute is not cumulative)');
  }
  return {
    kind: 'REFUND',
    idempotencyKey,
    externalRef,
    refundedMicrosTarget: v.amountMicros(target, 'refunded_micros_target', true),
    reason: input.reason,
    metadata: v.metadata(input.metadata),
  };
}

/**
 * Money paid back for a purchase (a refund or a lost dispute). The credits the refunded money
 * bought are clawed back from the lot, in proportion to the amount: cumulatively, so that
 * refunding the whole purchase in any number of parts claws back exactly the credits granted.
 * Credits already spent (or held) are never taken: the lot does not go below zero and the
 * missing credits are recorded as the shortfall.
 *
 * The money comes back out of the lot's deferred revenue first; then, for credits that
 * expired, out of the breakage they produced; only the rest out of revenue already recognised
 * ("if already used", ledger README §3). So over a lot's life recognised + breakage + refunded
 * equals what was paid, to the micro.
 */
export function applyRefund(state: LedgerState, cmd: RefundCommand): EntryDraft {
  const lotId = state.lotIdForExternalRef(cmd.externalRef);
  if (lotId === undefined) throw notFound('external_ref', `no purchase "${cmd.externalRef}"`);
  const lot = state.lot(lotId);
  if (lot.reversed) {
    // The reversal already sent the purchase's deferred money back to clearing and took its
    // credits: a refund now would pay out of recognised revenue for money returned once.
    throw refused('LOT_REVERSED', `external_ref: the purchase "${cmd.externalRef}" was reversed (lot ${lotId}); its money went back with the reversal, so there is nothing to refund`);
  }
  if (lot.currency === null || lot.costBasisMicros === 0n) {
    throw new LedgerError('FAILED_PRECONDITION', `external_ref: "${cmd.externalRef}" was free; there is nothing to refund`);
  }
  const paid = lot.costBasisMicros;
  const refundedBefore = lot.refundedMicros;
  const amountMicros = refundAmount(lot, cmd);
  const refundedAfter = refundedBefore + amountMicros;
  if (refundedAfter > paid) {
    throw refused(
      'REFUND_EXCEEDS_PAYMENT',
      `${cmd.amountMicros === undefined ? 'refunded_micros_target' : 'amount_micros'}: ${amountMicros} more would refund ${refundedAfter} of a ${paid} ${lot.currency} purchase (${refundedBefore} refunded or disputed already)`,
    );
  }
  const owed = (lot.grantedCredits * refundedAfter) / paid - (lot.grantedCredits * refundedBefore) / paid;
  const unheld = state.lotUnheld(lotId);
  const clawed = owed < unheld ? owed : unheld > 0n ? unheld : 0n;
  const shortfall = owed - clawed;
  // Of the shortfall, what a hold has now is owed: clawed back when the hold gives it back
  // (release, timeout, the uncaptured part of a capture). What a hold captures instead, and
  // what was spent already, is consumed after the refund.
  const heldRoom = state.account(lotId).debitsPending - lot.clawbackOwedCredits;
  const nowOwed = heldRoom <= 0n ? 0n : shortfall < heldRoom ? shortfall : heldRoom;

  const money = new LotMoney(state);
  const deferredLeft = money.deferredLeft(lotId);
  const fromDeferred = min(amountMicros, deferredLeft);
  const fromBreakage = min(amountMicros - fromDeferred, lot.breakageMicros);
  const fromRecognized = amountMicros - fromDeferred - fromBreakage;
  const accounts = state.money(lot.currency);
  const platformLeg = (debit: bigint, amount: bigint): TransferDraft[] =>
    amount === 0n ? [] : [{ kind: 'POSTED', debit, credit: accounts.refunds, amount, unit: lot.currency!, pending: null }];

  const transfers: TransferDraft[] = [];
  if (clawed > 0n) transfers.push(creditTransfer('POSTED', lotId, state.platform.clawedBack, clawed));
  transfers.push(
    ...refundTransfers(state, lotId, fromDeferred),
    ...platformLeg(accounts.breakage, fromBreakage),
    ...platformLeg(accounts.recognized, fromRecognized),
  );
  money.addBreakage(lotId, -fromBreakage);
  // A lot left without credits keeps no deferred money: what rounding left there is breakage.
  if (state.lotBalance(lotId) - clawed === 0n && deferredLeft - fromDeferred > 0n) {
    transfers.push(...breakageTransfers(state, money, lotId, deferredLeft - fromDeferred));
  }
  return {
    kind: 'REFUND',
    userId: lot.userId,
    holdId: null,
    effectiveAt: state.now,
    policyVersion: null,
    allocation: null,
    metadata: {
      ...cmd.metadata,
      external_ref: cmd.externalRef,
      reason: cmd.reason,
      lot_id: lotId.toString(),
      ...(cmd.refundedMicrosTarget === undefined
        ? {}
        : { refunded_micros_target: cmd.refundedMicrosTarget.toString(), amount_micros: amountMicros.toString() }),
      shortfall_credits: shortfall.toString(),
      ...(nowOwed > 0n ? { clawback_owed_added_credits: nowOwed.toString() } : {}),
      from_deferred_micros: fromDeferred.toString(),
      from_breakage_micros: fromBreakage.toString(),
      from_recognized_micros: fromRecognized.toString(),
    },
    transfers,
    newAccounts: [],
    newLot: null,
    lotUpdates: money.lotUpdates([
      {
        ...lot,
        refundedMicros: refundedAfter,
        disputedMicros: lot.disputedMicros + (cmd.reason === 'DISPUTE' ? amountMicros : 0n),
        clawbackOwedCredits: lot.clawbackOwedCredits + nowOwed,
        refundedSeq: state.nextSeq,
      },
    ]),
    reversesSeq: null,
    hold: null,
    result: { lotId, clawedBackCredits: clawed, shortfallCredits: shortfall, refundedMicrosTotal: refundedAfter },
  };
}

/**
 * The money this refund pays back: its own amount, or what takes the purchase's refunds (not
 * counting disputes) from their total so far up to the target. Computed here, inside the write
 * batch that holds the user's lock, so two cumulative totals racing each other cannot both
 * refund the same difference.
 */
function refundAmount(lot: LotState, cmd: RefundCommand): bigint {
  if (cmd.amountMicros !== undefined) return cmd.amountMicros;
  const target = cmd.refundedMicrosTarget!;
  const refundedByRefunds = lot.refundedMicros - lot.disputedMicros;
  if (target <= refundedByRefunds) {
    throw refused(
      'ALREADY_REFUNDED',
      `refunded_micros_target: refunds of "${cmd.externalRef}" total ${refundedByRefunds} already, at or above ${target}`,
    );
  }
  return target - refundedByRefunds;
}

function min(a: bigint, b: bigint): bigint {
  return a < b ? a : b;
}
