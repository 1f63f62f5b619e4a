import { refused } from '../domain/errors.js';
import type { EntryDraft, LedgerState } from '../domain/ledger-state.js';
import type { ExpireCommand } from '../domain/types.js';
import { expiryTransfers, LotMoney } from './spend.js';

/**
 * The expiry sweeper's command for one lot past its expires_at: its unheld remainder leaves
 * (credits → platform.credits_expired, leftover deferred money → breakage). Credits held at
 * that moment stay capturable; whatever their hold releases is expired by the release itself.
 */
export function applyExpire(state: LedgerState, cmd: ExpireCommand): EntryDraft {
  const lot = state.lot(cmd.lotId);
  if (!state.isExpired(lot)) {
    throw refused('NOTHING_TO_EXPIRE', `lot ${lot.accountId} expires at ${lot.expiresAt?.toISOString() ?? 'never'}`);
  }
  const unheld = state.lotUnheld(lot.accountId);
  if (unheld <= 0n || lot.expirySwept) {
    throw refused('NOTHING_TO_EXPIRE', `lot ${lot.accountId} has nothing left to expire`);
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
