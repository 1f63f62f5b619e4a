import type { EntryDraft, LedgerState } from '../domain/ledger-state.js';
import type { ExtendHoldCommand } from '../domain/types.js';
import * as v from '../domain/validate.js';
import { refused } from '../domain/errors.js';
import { openHold } from './hold-access.js';

export interface ExtendHoldInput {
  idempotencyKey: string;
  holdId: string;
  ttlMs: bigint;
}

export function parseExtendHold(input: ExtendHoldInput, ctx: v.ValidationContext): ExtendHoldCommand {
  return {
    kind: 'EXTEND_HOLD',
    idempotencyKey: v.idempotencyKey(input.idempotencyKey),
    holdId: v.holdId(input.holdId),
    ttlMs: v.ttlMs(input.ttlMs, ctx, false),
  };
}

/**
 * Renews a hold's lease to now + ttl_ms. It moves no credits, but it is journaled like every
 * write, so an auditor can see why a hold outlived its first TTL.
 */
export function applyExtendHold(state: LedgerState, cmd: ExtendHoldCommand): EntryDraft {
  const hold = openHold(state, cmd.holdId);
  const expiresAt = new Date(state.now.getTime() + cmd.ttlMs);
  const lifetimeEnd = hold.reservedAt.getTime() + state.holdPolicy.holdLifetimeMsMax;
  if (expiresAt.getTime() > lifetimeEnd) {
    throw refused(
      'HOLD_LIFETIME_EXCEEDED',
      `hold "${hold.id}" may live until ${new Date(lifetimeEnd).toISOString()} ` +
        `(${state.holdPolicy.holdLifetimeMsMax} ms after its Reserve); ttl_ms ${cmd.ttlMs} would take it past that`,
    );
  }
  return {
    kind: 'EXTEND_HOLD',
    userId: hold.userId,
    holdId: hold.id,
    effectiveAt: state.now,
    policyVersion: null,
    allocation: null,
    metadata: { hold_expires_at: expiresAt.toISOString() },
    transfers: [],
    newAccounts: [],
    newLot: null,
    lotUpdates: [],
    reversesSeq: null,
    hold: { ...hold, expiresAt },
    result: { holdId: hold.id, expiresAt },
  };
}
