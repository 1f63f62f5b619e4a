import { drawdownPolicyVersion } from '../domain/drawdown.js';
import { refused } from '../domain/errors.js';
import type { EntryDraft, LedgerState, TransferDraft } from '../domain/ledger-state.js';
import type { Allocation, CaptureCommand } from '../domain/types.js';
import * as v from '../domain/validate.js';
import { openHold } from './hold-access.js';
import { clawbackMetadata, creditTransfer, HoldReturns, LotMoney, recognitionTransfers, upstreamMetadata, upstreamTransfers } from './spend.js';

export interface CaptureInput {
  idempotencyKey: string;
  holdId: string;
  credits: bigint;
  upstream?: v.RawUpstream | undefined;
  metadata?: Record<string, string>;
}

export function parseCapture(input: CaptureInput, ctx: v.ValidationContext): CaptureCommand {
  return {
    kind: 'CAPTURE',
    idempotencyKey: v.idempotencyKey(input.idempotencyKey),
    holdId: v.holdId(input.holdId),
    credits: v.credits(input.credits),
    upstream: v.upstream(input.upstream, ctx),
    metadata: v.metadata(input.metadata),
  };
}

/**
 * Spends `credits` of a hold, taking them from its lots in the order they were reserved
 * (drawdown order), and voids the rest. Each spent lot recognises its share of deferred
 * revenue; the upstream's cost is booked against what the platform owes it.
 */
export function applyCapture(state: LedgerState, cmd: CaptureCommand): EntryDraft {
  const hold = openHold(state, cmd.holdId);
  if (cmd.credits > hold.credits) {
    throw refused('CAPTURE_EXCEEDS_HOLD', `credits: ${cmd.credits} exceeds the hold's ${hold.credits}`);
  }
  const transfers: TransferDraft[] = [];
  const spent: Allocation[] = [];
  const released: Allocation[] = [];
  let remaining = cmd.credits;
  for (const leg of hold.legs) {
    const take = leg.amount < remaining ? leg.amount : remaining;
    remaining -= take;
    const pending = { seq: leg.seq, idx: leg.idx };
    if (take > 0n) {
      transfers.push(creditTransfer('POST_PENDING', leg.lotId, state.platform.consumed, take, pending));
      spent.push({ lotId: leg.lotId, credits: take });
    }
    if (leg.amount > take) {
      transfers.push(creditTransfer('VOID_PENDING', leg.lotId, state.platform.consumed, leg.amount - take, pending));
      released.push({ lotId: leg.lotId, credits: leg.amount - take });
    }
  }
  // A lot that expired while this hold was open stays capturable for it. What the capture
  // releases goes first to a refund owed those credits, then, from an expired lot, to expiry,
  // in this same entry (ledger README §3).
  // The clawback goes first: it takes no money (the refund did), so the captured credits then
  // recognise revenue at the lot's remaining deferred money per remaining credit.
  const money = new LotMoney(state);
  const back = new HoldReturns(
    state,
    money,
    hold.legs.map((leg) => ({
      lotId: leg.lotId,
      returned: released.find((r) => r.lotId === leg.lotId)?.credits ?? 0n,
      pendingClosed: leg.amount,
    })),
  );
  transfers.push(...back.claw());
  transfers.push(...recognitionTransfers(state, money, spent));
  transfers.push(...back.expire());
  const expired = back.expired;
  transfers.push(...upstreamTransfers(state, cmd.upstream));
  return {
    kind: 'CAPTURE',
    userId: hold.userId,
    holdId: hold.id,
    effectiveAt: state.now,
    policyVersion: drawdownPolicyVersion,
    allocation: spent,
    metadata: { ...upstreamMetadata(cmd.upstream, cmd.metadata), ...clawbackMetadata(back.clawedBack) },
    transfers,
    newAccounts: [],
    newLot: null,
    lotUpdates: money.lotUpdates(back.lotUpdates),
    reversesSeq: null,
    hold: { ...hold, status: 'CAPTURED', closedSeq: state.nextSeq, capturedCredits: cmd.credits },
    result: {
      holdId: hold.id,
      capturedCredits: cmd.credits,
      releasedCredits: hold.credits - cmd.credits,
      allocation: spent,
      ...(expired > 0n ? { expiredCredits: expired } : {}),
    },
  };
}
