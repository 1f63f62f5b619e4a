import { drawdownPolicyVersion } from '../domain/drawdown.js';
import type { EntryDraft, LedgerState } from '../domain/ledger-state.js';
import type { ConsumeCommand } from '../domain/types.js';
import * as v from '../domain/validate.js';
import { allocateOrRefuse, creditTransfer, LotMoney, recognitionTransfers, upstreamMetadata, upstreamTransfers } from './spend.js';

export interface ConsumeInput {
  idempotencyKey: string;
  userId: string;
  credits: bigint;
  upstream?: v.RawUpstream | undefined;
  metadata?: Record<string, string>;
}

export function parseConsume(input: ConsumeInput, ctx: v.ValidationContext): ConsumeCommand {
  return {
    kind: 'CONSUME',
    idempotencyKey: v.idempotencyKey(input.idempotencyKey),
    userId: v.userId(input.userId),
    credits: v.credits(input.credits),
    upstream: v.upstream(input.upstream, ctx),
    metadata: v.metadata(input.metadata),
  };
}

/** Reserve and Capture in one entry: posted transfers lot → consumed, recognition, upstream cost. */
export function applyConsume(state: LedgerState, cmd: ConsumeCommand): EntryDraft {
  const allocation = allocateOrRefuse(state, cmd.userId, cmd.credits);
  return {
    kind: 'CONSUME',
    userId: cmd.userId,
    holdId: null,
    effectiveAt: state.now,
    policyVersion: drawdownPolicyVersion,
    allocation,
    metadata: upstreamMetadata(cmd.upstream, cmd.metadata),
    transfers: [
      ...allocation.map((a) => creditTransfer('POSTED', a.lotId, state.platform.consumed, a.credits)),
      ...recognitionTransfers(state, new LotMoney(state), allocation),
      ...upstreamTransfers(state, cmd.upstream),
    ],
    newAccounts: [],
    newLot: null,
    lotUpdates: [],
    reversesSeq: null,
    hold: null,
    result: { allocation },
  };
}
