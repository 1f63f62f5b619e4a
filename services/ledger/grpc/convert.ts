import * as pb from '../../generated/proto/credits/ledger/v1/ledger.js';
import type { Allocation, Bucket, EntryKind, RefundReason, TransferKind } from '../domain/types.js';
import type { Balance } from '../store/read-balance.js';
import type { EntryView } from '../store/read-entries.js';
import { invalid } from '../domain/errors.js';

/** Conversions between the wire types and the domain types; no rules live here. */

const bucketToPb: Record<Bucket, pb.Bucket> = {
  SUBSCRIPTION: pb.Bucket.BUCKET_SUBSCRIPTION,
  BONUS: pb.Bucket.BUCKET_BONUS,
  PURCHASED: pb.Bucket.BUCKET_PURCHASED,
};

export function bucketFromPb(bucket: pb.Bucket): Bucket | null {
  switch (bucket) {
    case pb.Bucket.BUCKET_SUBSCRIPTION:
      return 'SUBSCRIPTION';
    case pb.Bucket.BUCKET_BONUS:
      return 'BONUS';
    case pb.Bucket.BUCKET_PURCHASED:
      return 'PURCHASED';
    default:
      return null;
  }
}

const entryKindToPb: Record<EntryKind, pb.EntryKind> = {
  GRANT: pb.EntryKind.ENTRY_KIND_GRANT,
  PURCHASE: pb.EntryKind.ENTRY_KIND_PURCHASE,
  RESERVE: pb.EntryKind.ENTRY_KIND_RESERVE,
  EXTEND_HOLD: pb.EntryKind.ENTRY_KIND_EXTEND_HOLD,
  CAPTURE: pb.EntryKind.ENTRY_KIND_CAPTURE,
  RELEASE: pb.EntryKind.ENTRY_KIND_RELEASE,
  HOLD_TIMEOUT: pb.EntryKind.ENTRY_KIND_HOLD_TIMEOUT,
  CONSUME: pb.EntryKind.ENTRY_KIND_CONSUME,
  RENEW_SUBSCRIPTION: pb.EntryKind.ENTRY_KIND_RENEW_SUBSCRIPTION,
  EXPIRE: pb.EntryKind.ENTRY_KIND_EXPIRE,
  REFUND: pb.EntryKind.ENTRY_KIND_REFUND,
  REVERSE: pb.EntryKind.ENTRY_KIND_REVERSE,
};

export function refundReasonFromPb(reason: pb.RefundReason): RefundReason | null {
  if (reason === pb.RefundReason.REFUND_REASON_REFUND) return 'REFUND';
  if (reason === pb.RefundReason.REFUND_REASON_DISPUTE) return 'DISPUTE';
  return null;
}

export function entryKindFromPb(kind: pb.EntryKind): EntryKind | null {
  if (kind === pb.EntryKind.ENTRY_KIND_UNSPECIFIED) return null;
  const found = (Object.entries(entryKindToPb) as [EntryKind, pb.EntryKind][]).find(([, v]) => v === kind);
  if (!found) throw invalid('kind', `unknown entry kind ${kind}`);
  return found[0];
}

const transferKindToPb: Record<TransferKind, pb.TransferKind> = {
  POSTED: pb.TransferKind.TRANSFER_KIND_POSTED,
  PENDING: pb.TransferKind.TRANSFER_KIND_PENDING,
  POST_PENDING: pb.TransferKind.TRANSFER_KIND_POST_PENDING,
  VOID_PENDING: pb.TransferKind.TRANSFER_KIND_VOID_PENDING,
};

export function allocationsToPb(allocation: readonly Allocation[] | undefined): pb.Allocation[] {
  return (allocation ?? []).map((a) => ({ lotId: a.lotId, credits: a.credits }));
}

export function balanceToPb(balance: Balance): pb.GetBalanceResponse {
  return {
    userId: balance.userId,
    balance: balance.balance,
    held: balance.held,
    available: balance.available,
    buckets: balance.buckets.map((b) => ({
      bucket: bucketToPb[b.bucket],
      balance: b.balance,
      held: b.held,
      available: b.available,
    })),
    lots: balance.lots.map((l) => ({
      lotId: l.lotId,
      bucket: bucketToPb[l.bucket],
      grantedCredits: l.grantedCredits,
      balance: l.balance,
      held: l.held,
      available: l.available,
      effectiveAt: l.effectiveAt,
      expiresAt: l.expiresAt ?? undefined,
      priority: l.priority,
      costBasisMicros: l.costBasisMicros,
      deferredMicros: l.deferredMicros,
      currency: l.currency,
      externalRef: l.externalRef,
      entryId: l.entryId,
    })),
  };
}

export function entryToPb(e: EntryView): pb.Entry {
  return {
    entryId: e.seq,
    kind: entryKindToPb[e.kind],
    userId: e.userId ?? '',
    idempotencyKey: e.idempotencyKey,
    actor: e.actor,
    recordedAt: e.recordedAt,
    effectiveAt: e.effectiveAt,
    policyVersion: e.policyVersion ?? '',
    allocations: allocationsToPb(e.allocation),
    metadata: e.metadata,
    transfers: e.transfers.map((t) => ({
      index: t.idx,
      kind: transferKindToPb[t.kind],
      debitAccountId: t.debitAccountId,
      debitAccountCode: t.debitAccountCode,
      creditAccountId: t.creditAccountId,
      creditAccountCode: t.creditAccountCode,
      amount: t.amount,
      unit: t.unit,
      pendingEntryId: t.pendingSeq ?? 0n,
      pendingIndex: t.pendingIdx ?? 0,
    })),
    requestHash: e.requestHash,
    prevHash: e.prevHash,
    hash: e.hash,
    holdId: e.holdId ?? '',
    reversesEntryId: e.reversesSeq ?? 0n,
    reversedByEntryId: e.reversedBySeq ?? 0n,
  };
}
