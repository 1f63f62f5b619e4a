import { invalid, LedgerError, notFound, refused } from '../domain/errors.js';
import type { EntryDraft, LedgerState, TransferDraft } from '../domain/ledger-state.js';
import type { RefundCommand, RefundReason } from '../domain/types.js';
import * as v from '../domain/validate.js';
import { breakageTransfers, creditTransfer, LotMoney, refundTransfers } from './spend.js';

export interface RefundInput {
  idempotencyKey: string;
  externalRef: string;
  amountMicros: bigint;
  reason: RefundReason | null;
  metadata?: Record<string, string>;
}

export function parseRefund(input: RefundInput): RefundCommand {
  if (input.reason === null) throw invalid('reason', 'is required (REFUND or DISPUTE)');
  return {
    kind: 'REFUND',
    idempotencyKey: v.idempotencyKey(input.idempotencyKey),
    externalRef: v.externalRef(input.externalRef),
    amountMicros: v.amountMicros(input.amountMicros, 'amount_micros', true),
    reason: input.reason,
    metadata: v.metadata(input.metadata),
  };
}

/**
 * Money paid back for a purchase (a refund or a lost dispute). The credits the refunded money
 * bought are clawed back from the lot, in proportion to the amount: cumulatively, so that
 * refunding the whole purchase in any number of parts claws back exactly the credits granted.
 * Credits already spent (or held) are never taken: the lot does not go below zero and the
 * missing credits are recorded as the shortfall. The money leaves the lot's deferred revenue in
 * proportion to the credits clawed back; the rest of the refund comes out of revenue already
 * recognised.
 */
export function applyRefund(state: LedgerState, cmd: RefundCommand): EntryDraft {
  const lotId = state.lotIdForExternalRef(cmd.externalRef);
  if (lotId === undefined) throw notFound('external_ref', `no purchase "${cmd.externalRef}"`);
  const lot = state.lot(lotId);
  if (lot.currency === null || lot.costBasisMicros === 0n) {
    throw new LedgerError('FAILED_PRECONDITION', `external_ref: "${cmd.externalRef}" was free; there is nothing to refund`);
  }
  const paid = lot.costBasisMicros;
  const refundedBefore = lot.refundedMicros;
  const refundedAfter = refundedBefore + cmd.amountMicros;
  if (refundedAfter > paid) {
    throw refused(
      'REFUND_EXCEEDS_PAYMENT',
      `amount_micros: ${cmd.amountMicros} would refund ${refundedAfter} of a ${paid} ${lot.currency} purchase (${refundedBefore} refunded already)`,
    );
  }
  const owed = (lot.grantedCredits * refundedAfter) / paid - (lot.grantedCredits * refundedBefore) / paid;
  const unheld = state.lotUnheld(lotId);
  const clawed = owed < unheld ? owed : unheld > 0n ? unheld : 0n;
  const shortfall = owed - clawed;

  const money = new LotMoney(state);
  const transfers: TransferDraft[] = [];
  let fromDeferred = 0n;
  if (clawed > 0n) {
    transfers.push(creditTransfer('POSTED', lotId, state.platform.clawedBack, clawed));
    const share = money.take(lotId, clawed);
    fromDeferred = share < cmd.amountMicros ? share : cmd.amountMicros;
    // Rounding can leave a lot with no credits but a few deferred micros; they are breakage.
    if (share > fromDeferred) transfers.push(...breakageTransfers(state, lotId, share - fromDeferred));
  }
  transfers.push(...refundTransfers(state, lotId, fromDeferred));
  const fromRecognized = cmd.amountMicros - fromDeferred;
  if (fromRecognized > 0n) {
    const accounts = state.money(lot.currency);
    transfers.push({
      kind: 'POSTED',
      debit: accounts.recognized,
      credit: accounts.refunds,
      amount: fromRecognized,
      unit: lot.currency,
      pending: null,
    });
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
      shortfall_credits: shortfall.toString(),
      from_recognized_micros: fromRecognized.toString(),
    },
    transfers,
    newAccounts: [],
    newLot: null,
    lotUpdates: [{ ...lot, refundedMicros: refundedAfter }],
    reversesSeq: null,
    hold: null,
    result: { lotId, clawedBackCredits: clawed, shortfallCredits: shortfall, refundedMicrosTotal: refundedAfter },
  };
}
