import type { BookkeepingDraft, EntryDraft, LedgerState } from '../domain/ledger-state.js';
import type { Command } from '../domain/types.js';
import { applyCapture } from './capture.js';
import { applyConsume } from './consume.js';
import { applyExtendHold } from './extend-hold.js';
import { applyGrant } from './grant.js';
import { applyPurchase } from './purchase.js';
import { applyHoldTimeout, applyRelease } from './release.js';
import { applyReserve } from './reserve.js';
import { applyRenewSubscription } from './renew-subscription.js';
import { applyExpire } from './expire.js';
import { applyRefund } from './refund.js';
import { applyReverse } from './reverse.js';

/** Drafts the entry a command would post. Throws LedgerError for a refusal; writes nothing. */
export function draftEntry(state: LedgerState, command: Command): EntryDraft | BookkeepingDraft {
  switch (command.kind) {
    case 'GRANT':
      return applyGrant(state, command);
    case 'PURCHASE':
      return applyPurchase(state, command);
    case 'RESERVE':
      return applyReserve(state, command);
    case 'EXTEND_HOLD':
      return applyExtendHold(state, command);
    case 'CAPTURE':
      return applyCapture(state, command);
    case 'RELEASE':
      return applyRelease(state, command);
    case 'HOLD_TIMEOUT':
      return applyHoldTimeout(state, command);
    case 'CONSUME':
      return applyConsume(state, command);
    case 'RENEW_SUBSCRIPTION':
      return applyRenewSubscription(state, command);
    case 'EXPIRE':
      return applyExpire(state, command);
    case 'REFUND':
      return applyRefund(state, command);
    case 'REVERSE':
      return applyReverse(state, command);
  }
}

/** How many account ids a command may need, so a batch can pre-allocate them in one query. */
export function accountIdsNeeded(command: Command): number {
  if (command.kind === 'GRANT') return 1;
  if (command.kind === 'PURCHASE' || command.kind === 'RENEW_SUBSCRIPTION') return 2;
  return 0;
}

/** The user whose accounts the command debits or credits, when the request names one. */
export function commandUserId(command: Command): string | null {
  return 'userId' in command ? command.userId : null;
}

/** The hold the command acts on, if any. */
export function commandHoldId(command: Command): string | null {
  return 'holdId' in command ? command.holdId : null;
}
