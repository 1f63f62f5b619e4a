import { refused } from '../domain/errors.js';
import type { BookkeepingDraft, EntryDraft, LedgerState } from '../domain/ledger-state.js';
import type { ExpireCommand } from '../domain/types.js';
import { expiryTransfers, LotMoney } from './spend.js';

/**
 * The expiry sweeper's command for one lot past its expires_at: its unheld remainder leaves
 * (credits → platform.credits_expired, leftover deferred money → breakage). Credits held at
 * that moment stay capturable; whatever their hold releases is expired by the release itself.
 * A lot with nothing unheld left has nothing to journal: it is only marked finished, which is
 * bookkeeping (no entry), done here in the batch so the mark is made under the user's lock.
 */
export function applyExpire(state: LedgerState, cmd: ExpireCommand): EntryDraft | BookkeepingDraft {
  const lot = state.lot(cmd.lotId);
  if (!state.isExpired(lot)) {
    throw refused('NOTHING_TO_EXPIRE', `lot ${lot.accountId} expires at ${lot.expiresAt?.toISOString() ?? 'never'}`);
  }
  if (lot.expirySwept) throw refused('NOTHING_TO_EXPIRE', `lot ${lot.accountId} was expired already`);
  const unheld = state.lotUnheld(lot.accountId);
  if (unheld <= 0n) {
    // Held credits need no sweep: their release or capture expires what it gives back.
    return { kind: 'BOOKKEEPING', lotUpdates: [{ ...lot, expirySwept: true }], result: { lotId: lot.accountId, expiredCredits: 0n } };
  }
  const money = new LotMoney(state);
  const transfers = expiryTransfers(state, money, lot.accountId, unheld);
  return {
    kind: 'EXPIRE',
    userId: lot.userId,
    holdId: null,
    effectiveAt: lot.expiresAt ?? state.now,
    policyVersion: null,
    allocation: null,
    metadata: { lot_id: lot.accountId.toString(), expires_at: lot.expiresAt?.toISOString() ?? '' },
    transfers,
    newAccounts: [],
    newLot: null,
    lotUpdates: money.lotUpdates([{ ...lot, expirySwept: true }]),
    reversesSeq: null,
    hold: null,
    result: { lotId: lot.accountId, expiredCredits: unheld },
  };
}
