import { recognizedMicros } from '../domain/drawdown.js';
import type { LedgerState, TransferDraft } from '../domain/ledger-state.js';
import { refused, notFound } from '../domain/errors.js';
import { creditUnit, type Allocation, type UpstreamCost } from '../domain/types.js';

/**
 * Pieces shared by the debits (Reserve, Capture, Consume) and the hold commands.
 */

/** The allocation for a debit, or INSUFFICIENT_CREDITS naming what the user has. */
export function allocateOrRefuse(state: LedgerState, userId: string, credits: bigint): Allocation[] {
  if (!state.userExists(userId)) throw notFound('user_id', `unknown user "${userId}"`);
  const allocation = state.allocate(userId, credits);
  if (allocation === null) {
    throw refused(
      'INSUFFICIENT_CREDITS',
      `user "${userId}" has ${state.availableCredits(userId)} available credits; ${credits} requested`,
    );
  }
  return allocation;
}

/**
 * Money legs for credits that were spent: each paid lot's share of its deferred revenue moves
 * to recognised revenue, computed against the lot's balance before this entry.
 */
export function recognitionTransfers(state: LedgerState, spent: readonly Allocation[]): TransferDraft[] {
  const transfers: TransferDraft[] = [];
  for (const { lotId, credits } of spent) {
    const lot = state.lot(lotId);
    if (lot.deferredAccountId === null || lot.currency === null) continue;
    const deferred = state.account(lot.deferredAccountId);
    const amount = recognizedMicros(deferred.creditsPosted - deferred.debitsPosted, state.lotBalance(lotId), credits);
    if (amount === 0n) continue;
    transfers.push({
      kind: 'POSTED',
      debit: lot.deferredAccountId,
      credit: state.money(lot.currency).recognized,
      amount,
      unit: lot.currency,
      pending: null,
    });
  }
  return transfers;
}

/** The upstream's bill for the work: an expense and what the platform owes for it. */
export function upstreamTransfers(state: LedgerState, upstream: UpstreamCost | null): TransferDraft[] {
  if (upstream === null || upstream.amountMicros === 0n) return [];
  const money = state.money(upstream.currency);
  return [
    {
      kind: 'POSTED',
      debit: money.upstreamCost,
      credit: money.upstreamPayable,
      amount: upstream.amountMicros,
      unit: upstream.currency,
      pending: null,
    },
  ];
}

export function upstreamMetadata(upstream: UpstreamCost | null, metadata: Record<string, string>) {
  if (upstream === null) return metadata;
  return {
    ...metadata,
    'upstream.amount_micros': upstream.amountMicros.toString(),
    'upstream.currency': upstream.currency,
    ...(upstream.requestId ? { 'upstream.request_id': upstream.requestId } : {}),
    ...(upstream.model ? { 'upstream.model': upstream.model } : {}),
  };
}

export function creditTransfer(
  kind: TransferDraft['kind'],
  debit: bigint,
  credit: bigint,
  amount: bigint,
  pending: TransferDraft['pending'] = null,
): TransferDraft {
  return { kind, debit, credit, amount, unit: creditUnit, pending };
}
