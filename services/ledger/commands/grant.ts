import { invalid } from '../domain/errors.js';
import type { AccountState, EntryDraft, LedgerState, LotState } from '../domain/ledger-state.js';
import { creditUnit, flagNoOverdraft, type Bucket, type GrantCommand } from '../domain/types.js';
import * as v from '../domain/validate.js';
import { creditTransfer } from './spend.js';

export interface GrantInput {
  idempotencyKey: string;
  userId: string;
  credits: bigint;
  bucket: Bucket | null;
  effectiveAt?: Date | undefined;
  expiresAt?: Date | undefined;
  priority: number;
  metadata?: Record<string, string>;
}

export function parseGrant(input: GrantInput): GrantCommand {
  return {
    kind: 'GRANT',
    idempotencyKey: v.idempotencyKey(input.idempotencyKey),
    userId: v.userId(input.userId),
    credits: v.credits(input.credits),
    bucket: v.bucket(input.bucket),
    effectiveAt: v.optionalTime(input.effectiveAt, 'effective_at'),
    expiresAt: v.optionalTime(input.expiresAt, 'expires_at'),
    priority: v.priority(input.priority),
    metadata: v.metadata(input.metadata),
  };
}

/** Free credits: platform.credits_issued → a new lot. */
export function applyGrant(state: LedgerState, cmd: GrantCommand): EntryDraft {
  const { effectiveAt, expiresAt } = lotWindow(state, cmd.effectiveAt, cmd.expiresAt);
  const lotId = state.allocateAccountId();
  return {
    kind: 'GRANT',
    userId: cmd.userId,
    holdId: null,
    effectiveAt,
    policyVersion: null,
    allocation: null,
    metadata: cmd.metadata,
    transfers: [creditTransfer('POSTED', state.platform.issued, lotId, cmd.credits)],
    newAccounts: [lotAccount(lotId, cmd.userId)],
    newLot: newLot(state, {
      accountId: lotId,
      userId: cmd.userId,
      bucket: cmd.bucket,
      grantedCredits: cmd.credits,
      effectiveAt,
      expiresAt,
      priority: cmd.priority,
    }),
    lotUpdates: [],
    reversesSeq: null,
    hold: null,
    result: { lotId },
  };
}

type NewLotFields = Pick<LotState, 'accountId' | 'userId' | 'bucket' | 'grantedCredits' | 'effectiveAt' | 'expiresAt' | 'priority'> &
  Partial<Pick<LotState, 'costBasisMicros' | 'currency' | 'deferredAccountId' | 'externalRef' | 'plan' | 'periodStart'>>;

/** A lot created by the entry about to be posted: free, unrefunded and unswept unless told. */
export function newLot(state: LedgerState, fields: NewLotFields): LotState {
  return {
    costBasisMicros: 0n,
    currency: null,
    deferredAccountId: null,
    externalRef: null,
    plan: null,
    periodStart: null,
    ...fields,
    entrySeq: state.nextSeq,
    refundedMicros: 0n,
    breakageMicros: 0n,
    disputedMicros: 0n,
    clawbackOwedCredits: 0n,
    expirySwept: false,
    reversed: false,
    refundedSeq: null,
  };
}

/** A lot starts now unless told otherwise, and must not be born expired. */
export function lotWindow(
  state: LedgerState,
  effectiveAt: Date | null,
  expiresAt: Date | null,
): { effectiveAt: Date; expiresAt: Date | null } {
  const start = effectiveAt ?? state.now;
  if (expiresAt !== null) {
    if (expiresAt.getTime() <= start.getTime()) throw invalid('expires_at', 'must be after effective_at');
    if (expiresAt.getTime() <= state.now.getTime()) throw invalid('expires_at', 'is in the past');
  }
  return { effectiveAt: start, expiresAt };
}

export function lotAccount(id: bigint, userId: string): AccountState {
  return userAccount(id, `user:${userId}:lot:${id}`, creditUnit, 'LOT', userId);
}

export function userAccount(
  id: bigint,
  code: string,
  unit: string,
  kind: 'LOT' | 'DEFERRED',
  userId: string,
): AccountState {
  return {
    id,
    code,
    unit,
    kind,
    userId,
    flags: flagNoOverdraft,
    debitsPosted: 0n,
    creditsPosted: 0n,
    debitsPending: 0n,
    creditsPending: 0n,
    version: 0n,
  };
}

