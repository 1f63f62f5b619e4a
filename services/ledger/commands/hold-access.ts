import { notFound, refused } from '../domain/errors.js';
import type { HoldState, LedgerState } from '../domain/ledger-state.js';

/**
 * The hold a command acts on, if it may still act on it. `acceptLapsed` lets Release void a
 * hold whose TTL passed before the sweeper got to it: the outcome is the one the sweeper would
 * have written.
 */
export function openHold(state: LedgerState, holdId: string, acceptLapsed = false): HoldState {
  const hold = state.hold(holdId);
  if (!hold) throw notFound('hold_id', `unknown hold "${holdId}"`);
  if (hold.status === 'EXPIRED') {
    throw refused('HOLD_EXPIRED', `hold "${holdId}" timed out and was voided by entry ${hold.closedSeq}`);
  }
  if (hold.status !== 'OPEN') {
    throw refused('HOLD_CLOSED', `hold "${holdId}" is already ${hold.status.toLowerCase()} by entry ${hold.closedSeq}`);
  }
  if (!acceptLapsed && hold.expiresAt.getTime() <= state.now.getTime()) {
    throw refused('HOLD_EXPIRED', `hold "${holdId}" expired at ${hold.expiresAt.toISOString()}`);
  }
  return hold;
}
