import { invalid, notFound, refused } from '../domain/errors.js';
import type { EntryDraft, LedgerState, TransferDraft } from '../domain/ledger-state.js';
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
  if (!reversibleKinds.has(original.kind)) {
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
  // Credits given back to a lot that has expired must not become spendable: if the sweeper
  // was done with the lot, hand it back to the sweeper, which journals their expiry.
  const lotUpdates = transfers.flatMap((t) => {
    const account = state.platform.all.has(t.credit) ? null : state.account(t.credit);
    if (account?.kind !== 'LOT') return [];
    const lot = state.lot(t.credit);
    return state.isExpired(lot) && lot.expirySwept ? [{ ...lot, expirySwept: false }] : [];
  });
  return {
    kind: 'REVERSE',
    userId: original.userId,
    holdId: original.holdId,
    effectiveAt: state.now,
    policyVersion: null,
    allocation: null,
    metadata: { reverses_entry_id: original.seq.toString(), reversed_kind: original.kind, reason: cmd.reason },
    transfers,
    newAccounts: [],
    newLot: null,
    lotUpdates,
    reversesSeq: original.seq,
    hold: null,
    result: {},
  };
}
