import { LedgerError } from '../domain/errors.js';
import type { EntryDraft, LedgerState } from '../domain/ledger-state.js';
import type { Bucket, PurchaseCommand } from '../domain/types.js';
import * as v from '../domain/validate.js';
import { lotAccount, lotWindow, newLot, userAccount } from './grant.js';
import { creditTransfer } from './spend.js';

export interface PurchaseInput {
  idempotencyKey: string;
  userId: string;
  credits: bigint;
  bucket: Bucket | null;
  amountMicros: bigint;
  currency: string;
  externalRef: string;
  expiresAt?: Date | undefined;
  priority: number;
  metadata?: Record<string, string>;
}

export function parsePurchase(input: PurchaseInput, ctx: v.ValidationContext): PurchaseCommand {
  return {
    kind: 'PURCHASE',
    idempotencyKey: v.idempotencyKey(input.idempotencyKey),
    userId: v.userId(input.userId),
    credits: v.credits(input.credits),
    bucket: v.bucket(input.bucket, 'bucket', ['PURCHASED', 'BONUS']),
    amountMicros: v.amountMicros(input.amountMicros, 'amount_micros', true),
    currency: v.currency(input.currency, 'currency', ctx),
    externalRef: v.externalRef(input.externalRef),
    expiresAt: v.optionalTime(input.expiresAt, 'expires_at'),
    priority: v.priority(input.priority),
    metadata: v.metadata(input.metadata),
  };
}

/**
 * A paid lot: platform.credits_issued → new lot for the credits, and stripe.clearing → the
 * lot's own deferred-revenue account for the money, recognised as the credits are spent.
 */
export function applyPurchase(state: LedgerState, cmd: PurchaseCommand): EntryDraft {
  const earlier = state.externalRefEntry(cmd.externalRef);
  if (earlier !== undefined) {
    throw new LedgerError(
      'ALREADY_EXISTS',
      `external_ref: "${cmd.externalRef}" was already purchased by entry ${earlier}`,
    );
  }
  const { effectiveAt, expiresAt } = lotWindow(state, null, cmd.expiresAt);
  const lotId = state.allocateAccountId();
  const deferredId = state.allocateAccountId();
  const money = state.money(cmd.currency);
  return {
    kind: 'PURCHASE',
    userId: cmd.userId,
    holdId: null,
    effectiveAt,
    policyVersion: null,
    allocation: null,
    metadata: { ...cmd.metadata, external_ref: cmd.externalRef },
    transfers: [
      creditTransfer('POSTED', state.platform.issued, lotId, cmd.credits),
      {
        kind: 'POSTED',
        debit: money.clearing,
        credit: deferredId,
        amount: cmd.amountMicros,
        unit: cmd.currency,
        pending: null,
      },
    ],
    newAccounts: [
      lotAccount(lotId, cmd.userId),
      userAccount(deferredId, `user:${cmd.userId}:lot:${lotId}:deferred`, cmd.currency, 'DEFERRED', cmd.userId),
    ],
    newLot: newLot(state, {
      accountId: lotId,
      userId: cmd.userId,
      bucket: cmd.bucket,
      grantedCredits: cmd.credits,
      effectiveAt,
      expiresAt,
      priority: cmd.priority,
      costBasisMicros: cmd.amountMicros,
      currency: cmd.currency,
      deferredAccountId: deferredId,
      externalRef: cmd.externalRef,
    }),
    lotUpdates: [],
    reversesSeq: null,
    hold: null,
    result: { lotId },
  };
}
