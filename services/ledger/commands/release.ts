import { refused } from '../domain/errors.js';
import type { EntryDraft, HoldState, LedgerState } from '../domain/ledger-state.js';
import type { HoldTimeoutCommand, ReleaseCommand } from '../domain/types.js';
import * as v from '../domain/validate.js';
import { openHold } from './hold-access.js';
import { clawbackMetadata, creditTransfer, HoldReturns, LotMoney } from './spend.js';

export interface ReleaseInput {
  idempotencyKey: string;
  holdId: string;
  metadata?: Record<string, string>;
}

export function parseRelease(input: ReleaseInput): ReleaseCommand {
  return {
    kind: 'RELEASE',
    idempotencyKey: v.idempotencyKey(input.idempotencyKey),
    holdId: v.holdId(input.holdId),
    metadata: v.metadata(input.metadata),
  };
}

/** Voids every pending transfer of a hold. A lapsed hold not yet swept may still be released. */
export function applyRelease(state: LedgerState, cmd: ReleaseCommand): EntryDraft {
  return voidHold(state, openHold(state, cmd.holdId, true), 'RELEASE', cmd.metadata);
}

/** The sweeper's command for a hold whose TTL passed: the same void, journaled as a timeout. */
export function applyHoldTimeout(state: LedgerState, cmd: HoldTimeoutCommand): EntryDraft {
  const hold = openHold(state, cmd.holdId, true);
  if (hold.expiresAt.getTime() > state.now.getTime()) {
    throw refused('HOLD_CLOSED', `hold "${hold.id}" was extended to ${hold.expiresAt.toISOString()}`);
  }
  return voidHold(state, hold, 'HOLD_TIMEOUT', { hold_expired_at: hold.expiresAt.toISOString() });
}

/**
 * Voids every leg of a hold. Credits that return to a lot are first clawed back for a refund
 * that could not take them while held, then expired if the lot expired meanwhile, in the same
 * entry, so they never become spendable again (ledger README §3).
 */
function voidHold(
  state: LedgerState,
  hold: HoldState,
  kind: 'RELEASE' | 'HOLD_TIMEOUT',
  metadata: Record<string, string>,
): EntryDraft {
  const money = new LotMoney(state);
  const back = new HoldReturns(
    state,
    money,
    hold.legs.map((leg) => ({ lotId: leg.lotId, returned: leg.amount, pendingClosed: leg.amount })),
  );
  // Claw back first, then expire: the metadata and result below read what these did.
  const returned = [...back.claw(), ...back.expire()];
  return {
    kind,
    userId: hold.userId,
    holdId: hold.id,
    effectiveAt: state.now,
    policyVersion: null,
    allocation: null,
    metadata: { ...metadata, ...clawbackMetadata(back.clawedBack) },
    transfers: [
      ...hold.legs.map((leg) =>
        creditTransfer('VOID_PENDING', leg.lotId, state.platform.consumed, leg.amount, { seq: leg.seq, idx: leg.idx }),
      ),
      ...returned,
    ],
    newAccounts: [],
    newLot: null,
    lotUpdates: money.lotUpdates(back.lotUpdates),
    reversesSeq: null,
    hold: { ...hold, status: kind === 'RELEASE' ? 'RELEASED' : 'EXPIRED', closedSeq: state.nextSeq },
    result: { holdId: hold.id, releasedCredits: hold.credits, ...(back.expired > 0n ? { expiredCredits: back.expired } : {}) },
  };
}
