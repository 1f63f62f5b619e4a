import { randomUUID } from 'node:crypto';
import { drawdownPolicyVersion } from '../domain/drawdown.js';
import type { EntryDraft, LedgerState } from '../domain/ledger-state.js';
import type { ReserveCommand } from '../domain/types.js';
import * as v from '../domain/validate.js';
import { allocateOrRefuse, creditTransfer } from './spend.js';

export interface ReserveInput {
  idempotencyKey: string;
  userId: string;
  credits: bigint;
  ttlMs: bigint;
  metadata?: Record<string, string>;
}

export function parseReserve(input: ReserveInput, ctx: v.ValidationContext): ReserveCommand {
  return {
    kind: 'RESERVE',
    idempotencyKey: v.idempotencyKey(input.idempotencyKey),
    userId: v.userId(input.userId),
    credits: v.credits(input.credits),
    ttlMs: v.ttlMs(input.ttlMs, ctx, true),
    metadata: v.metadata(input.metadata),
  };
}

/** A hold: one pending transfer lot → platform.credits_consumed per lot, in drawdown order. */
export function applyReserve(state: LedgerState, cmd: ReserveCommand): EntryDraft {
  const allocation = allocateOrRefuse(state, cmd.userId, cmd.credits);
  const seq = state.nextSeq;
  const holdId = randomUUID();
  const ttlMs = cmd.ttlMs === 0 ? state.holdPolicy.holdTtlMsDefault : cmd.ttlMs;
  const expiresAt = new Date(state.now.getTime() + ttlMs);
  return {
    kind: 'RESERVE',
    userId: cmd.userId,
    holdId,
    effectiveAt: state.now,
    policyVersion: drawdownPolicyVersion,
    allocation,
    metadata: { ...cmd.metadata, hold_expires_at: expiresAt.toISOString() },
    transfers: allocation.map((a) => creditTransfer('PENDING', a.lotId, state.platform.consumed, a.credits)),
    newAccounts: [],
    newLot: null,
    lotUpdates: [],
    reversesSeq: null,
    hold: {
      id: holdId,
      userId: cmd.userId,
      reserveSeq: seq,
      reservedAt: state.now,
      credits: cmd.credits,
      expiresAt,
      status: 'OPEN',
      closedSeq: null,
      capturedCredits: null,
      legs: allocation.map((a, idx) => ({ seq, idx, lotId: a.lotId, amount: a.credits })),
    },
    result: { holdId, expiresAt, allocation },
  };
}
