import { invalid, notFound, refused } from '../domain/errors.js';
import type { EntryDraft, LedgerState, LotState, ReversibleEntry, TransferDraft } from '../domain/ledger-state.js';
import { flagNoOverdraft, type ReverseCommand } from '../domain/types.js';
import * as v from '../domain/validate.js';

/**
 * Entries a reversal may mirror: plain movements of credits and money. Refunds, renewals and
 * expiries also keep lot bookkeeping (refunded, breakage, sweep state) that a mirror would
 * leave wrong; they are corrected with their own commands.
 */
const reversibleKinds: ReadonlySet<string> = new Set(['GRANT', 'PURCHASE', 'CONSUME', 'CAPTURE']);

export interface ReverseInput {
  idempotencyKey: string;
  entryId: bigint;
  reason: string;
}

export function parseReverse(input: ReverseInput): ReverseCommand {
  if (typeof input.entryId !== 'bigint' || input.entryId <= 0n) throw invalid('entry_id', 'must be a positive entry id');
  const reason = typeof input.reason === 'string' ? input.reason.trim() : '';
  if (reason === '') throw invalid('reason', 'is required: say why the entry is reversed');
  if (Buffer.byteLength(reason) > 256) throw invalid('reason', 'is longer than 256 bytes');
  v.withoutNul('reason', reason);
  return { kind: 'REVERSE', idempotencyKey: v.idempotencyKey(input.idempotencyKey), entrySeq: input.entryId, reason };
}

export interface ReinstateDisputeInput {
  idempotencyKey: string;
  entryId: bigint;
}

/** ReinstateDispute: a reversal restricted to DISPUTE refunds (the payments role may call it). */
export function parseReinstateDispute(input: ReinstateDisputeInput): ReverseCommand {
  if (typeof input.entryId !== 'bigint' || input.entryId <= 0n) throw invalid('entry_id', 'must be a positive entry id');
  return {
    kind: 'REVERSE',
    idempotencyKey: v.idempotencyKey(input.idempotencyKey),
    entrySeq: input.entryId,
    reason: 'dispute won',
    disputeWon: true,
  };
}

/**
 * An admin correction: a new entry whose transfers mirror the posted effect of an earlier one
 * (debit and credit swapped), linked to it both ways (reverses_seq here; the original's
 * reversal is found through the unique index). Pending and voided legs had no posted effect,
 * so they are not mirrored; a reservation whose hold is still open cannot be reversed. A
 * reversal that would overdraw a lot (its credits were spent since) is refused.
 */
export function applyReverse(state: LedgerState, cmd: ReverseCommand): EntryDraft {
  const original = state.reversible(cmd.entrySeq);
  if (!original) throw notFound('entry_id', `no entry ${cmd.entrySeq}`);
  if (original.reversedBy !== null) {
    throw refused('ALREADY_REVERSED', `entry ${original.seq} was already reversed by entry ${original.reversedBy}`);
  }
  if (original.reversesSeq !== null) {
    throw refused('NOT_REVERSIBLE', `entry ${original.seq} is itself a reversal; post a new correction instead`);
  }
  if (original.holdId !== null && original.kind === 'RESERVE' && state.hold(original.holdId)?.status === 'OPEN') {
    throw refused('HOLD_OPEN', `entry ${original.seq} reserved hold "${original.holdId}", which is still open`);
  }
  const dispute = cmd.disputeWon ? disputeRefund(state, original) : null;
  if (!dispute && !reversibleKinds.has(original.kind)) {
    throw refused(
      'NOT_REVERSIBLE',
      `entry ${original.seq} is a ${original.kind}; only ${[...reversibleKinds].join(', ')} entries can be reversed (refunds, renewals and expiries have their own commands)`,
    );
  }
  const transfers: TransferDraft[] = original.transfers
    .filter((t) => t.kind === 'POSTED' || t.kind === 'POST_PENDING')
    .map((t) => ({ kind: 'POSTED', debit: t.credit, credit: t.debit, amount: t.amount, unit: t.unit, pending: null }));
  if (transfers.length === 0) {
    throw refused('NOT_REVERSIBLE', `entry ${original.seq} (${original.kind}) moved nothing that a reversal could mirror`);
  }
  // The lots' figures first: a refusal there names the real reason (a refunded or reversed
  // lot), where the overdraft check below would only see its symptom.
  const lotUpdates = dispute ? reopenExpired(state, transfers) : mirrorLots(state, original, transfers);
  // Refuse here, with a reason, what post() would otherwise reject as a bug.
  const debits = new Map<bigint, bigint>();
  for (const t of transfers) {
    debits.set(t.debit, (debits.get(t.debit) ?? 0n) + t.amount);
    debits.set(t.credit, (debits.get(t.credit) ?? 0n) - t.amount);
  }
  for (const [id, net] of debits) {
    if (net <= 0n || state.platform.all.has(id)) continue;
    const a = state.account(id);
    if ((a.flags & flagNoOverdraft) !== 0 && a.debitsPosted + a.debitsPending + net > a.creditsPosted) {
      throw refused(
        'INSUFFICIENT_CREDITS',
        `entry ${original.seq} cannot be reversed: account ${a.code} no longer holds the ${net} ${a.unit} it moved`,
      );
    }
  }
  let result: EntryDraft['result'] = {};
  if (dispute) {
    // The lot's bookkeeping goes back with the money: the dispute no longer counts as refunded,
    // and breakage regains what the dispute took from it and loses what the dispute's emptying
    // of the lot sent there.
    const lot = lotUpdates.find((l) => l.accountId === dispute.lot.accountId) ?? dispute.lot;
    // Credits the dispute could not claw back because a hold had them are owed no more.
    const owedByDispute = BigInt(original.metadata.clawback_owed_added_credits ?? '0');
    const updated = {
      ...lot,
      refundedMicros: lot.refundedMicros - dispute.amountMicros,
      disputedMicros: lot.disputedMicros - dispute.amountMicros,
      breakageMicros: lot.breakageMicros + dispute.breakageNetMicros,
      clawbackOwedCredits: lot.clawbackOwedCredits - (owedByDispute < lot.clawbackOwedCredits ? owedByDispute : lot.clawbackOwedCredits),
    };
    lotUpdates.splice(0, lotUpdates.length, updated);
    result = { reinstatedCredits: dispute.clawedCredits };
  }
  return {
    kind: 'REVERSE',
    userId: original.userId,
    holdId: original.holdId,
    effectiveAt: state.now,
    policyVersion: null,
    allocation: null,
    metadata: {
      reverses_entry_id: original.seq.toString(),
      reversed_kind: original.kind,
      reason: cmd.reason,
      ...(dispute ? { lot_id: dispute.lot.accountId.toString(), external_ref: dispute.lot.externalRef ?? '' } : {}),
    },
    transfers,
    newAccounts: [],
    newLot: null,
    lotUpdates,
    reversesSeq: original.seq,
    hold: null,
    result,
  };
}

interface DisputeRefund {
  lot: LotState;
  /** Money the dispute took: its legs into the platform's refunds account. */
  amountMicros: bigint;
  /** Credits the dispute clawed back from the lot. */
  clawedCredits: bigint;
  /** What undoing the dispute changes in the lot's breakage total: + taken from it, − sent to it. */
  breakageNetMicros: bigint;
}

/**
 * The DISPUTE refund `original` as a won dispute undoes it, or NOT_REVERSIBLE for any other
 * entry. A refund entry records its reason and lot in its metadata; the amounts come from its
 * transfers, so nothing but the journal decides them.
 */
function disputeRefund(state: LedgerState, original: ReversibleEntry): DisputeRefund {
  if (original.kind !== 'REFUND' || original.metadata.reason !== 'DISPUTE' || original.metadata.lot_id === undefined) {
    throw refused('NOT_REVERSIBLE', `entry ${original.seq} is a ${original.kind}${original.kind === 'REFUND' ? ` (${original.metadata.reason})` : ''}, not a dispute refund`);
  }
  const lot = state.lot(BigInt(original.metadata.lot_id));
  const money = lot.currency === null ? null : state.money(lot.currency);
  let amountMicros = 0n;
  let clawedCredits = 0n;
  let breakageNetMicros = 0n;
  for (const t of original.transfers) {
    if (money && t.credit === money.refunds) amountMicros += t.amount;
    if (money && t.debit === money.breakage && t.credit === money.refunds) breakageNetMicros += t.amount;
    if (money && t.debit === lot.deferredAccountId && t.credit === money.breakage) breakageNetMicros -= t.amount;
    if (t.debit === lot.accountId && t.credit === state.platform.clawedBack) clawedCredits += t.amount;
  }
  return { lot, amountMicros, clawedCredits, breakageNetMicros };
}

function isLotAccount(state: LedgerState, id: bigint): boolean {
  return !state.platform.all.has(id) && state.account(id).kind === 'LOT';
}

/**
 * Credits given back to a lot that has expired must not become spendable: if the sweeper was
 * done with the lot, hand it back to the sweeper, which journals their expiry.
 */
function reopenExpired(state: LedgerState, transfers: readonly TransferDraft[]): LotState[] {
  return transfers.flatMap((t) => {
    if (!isLotAccount(state, t.credit)) return [];
    const lot = state.lot(t.credit);
    return state.isExpired(lot) && lot.expirySwept ? [{ ...lot, expirySwept: false }] : [];
  });
}

/**
 * The lots an admin reversal touches, as it leaves them (ledger README §3, "Reverse and lots"),
 * or a refusal where no consistent state exists:
 * - credits go back to a refunded lot only if they were drawn after its last refund, and only
 *   up to its unrefunded share: a refunded purchase never yields credits beyond that share
 *   (LOT_REFUNDED); never to a lot that was reversed itself (LOT_REVERSED);
 * - reversing the Grant or Purchase that created a lot marks the lot reversed, so its
 *   external_ref can no longer be refunded; a lot refunded in any part cannot be (the refund
 *   took money the mirror would take again);
 * - money the mirror moves between a lot's deferred account and breakage moves the lot's
 *   breakage figure with it (a capture's expiry legs, a spend's rounding remainder);
 * - an expired lot the sweeper was done with and that gets credits back is reopened.
 */
function mirrorLots(state: LedgerState, original: ReversibleEntry, transfers: readonly TransferDraft[]): LotState[] {
  const updates = new Map<bigint, LotState>();
  const current = (id: bigint) => updates.get(id) ?? state.lot(id);
  for (const lot of reopenExpired(state, transfers)) updates.set(lot.accountId, lot);
  const touched = new Set<bigint>();
  const givenBack = new Map<bigint, bigint>();
  for (const t of transfers) {
    if (isLotAccount(state, t.debit)) touched.add(t.debit);
    if (!isLotAccount(state, t.credit)) continue;
    touched.add(t.credit);
    givenBack.set(t.credit, (givenBack.get(t.credit) ?? 0n) + t.amount);
  }
  for (const [id, credits] of givenBack) {
    const lot = current(id);
    if (lot.reversed) {
      throw refused('LOT_REVERSED', `entry ${original.seq} cannot be reversed: it would give credits back to lot ${id}, whose creating entry ${lot.entrySeq} was reversed`);
    }
    if (lot.refundedMicros === 0n) continue;
    // A refunded lot gets back only credits drawn after its last refund (that refund's clawback
    // counted earlier draws as spent: its shortfall), and never more than its unrefunded share.
    const account = state.account(id);
    const shareCredits = lot.grantedCredits - (lot.grantedCredits * lot.refundedMicros) / lot.costBasisMicros;
    const after = account.creditsPosted - account.debitsPosted + credits - lot.clawbackOwedCredits;
    if (lot.refundedSeq === null || original.seq < lot.refundedSeq || after > shareCredits) {
      throw refused(
        'LOT_REFUNDED',
        `entry ${original.seq} cannot be reversed: it would give ${credits} credits back to lot ${id} ("${lot.externalRef}"), refunded ${lot.refundedMicros} of ${lot.costBasisMicros} ${lot.currency} micros ${lot.refundedSeq === null ? 'by a refund recorded before refunds were sequenced' : `by entry ${lot.refundedSeq}`}, ${lot.refundedSeq === null || original.seq < lot.refundedSeq ? 'after these credits were drawn' : `which leaves it ${shareCredits} credits`}; grant the credits instead`,
      );
    }
  }
  if (original.kind === 'GRANT' || original.kind === 'PURCHASE') {
    const created = [...touched].map(current).find((l) => l.entrySeq === original.seq);
    if (!created) throw new Error(`entry ${original.seq} (${original.kind}) created no lot its mirror takes from`);
    if (created.refundedMicros > 0n) {
      throw refused(
        'LOT_REFUNDED',
        `entry ${original.seq} cannot be reversed: ${created.refundedMicros} ${created.currency} micros of purchase "${created.externalRef}" were refunded already, and the reversal would send that money back a second time`,
      );
    }
    updates.set(created.accountId, { ...created, reversed: true });
  }
  for (const id of touched) {
    const lot = current(id);
    if (lot.deferredAccountId === null || lot.currency === null) continue;
    const breakage = state.money(lot.currency).breakage;
    let delta = 0n;
    for (const t of transfers) {
      if (t.debit === lot.deferredAccountId && t.credit === breakage) delta += t.amount;
      if (t.debit === breakage && t.credit === lot.deferredAccountId) delta -= t.amount;
    }
    if (delta !== 0n) updates.set(id, { ...lot, breakageMicros: lot.breakageMicros + delta });
  }
  return [...updates.values()];
}
