import { recognizedMicros } from '../domain/drawdown.js';
import type { LedgerState, TransferDraft } from '../domain/ledger-state.js';
import { refused, notFound } from '../domain/errors.js';
import type { LotState, MoneyAccounts } from '../domain/ledger-state.js';
import { creditUnit, type Allocation, type UpstreamCost } from '../domain/types.js';

/**
 * Pieces shared by the debits (Reserve, Capture, Consume) and the hold commands.
 */

/** The allocation for a debit, or INSUFFICIENT_CREDITS naming what the user has. */
export function allocateOrRefuse(state: LedgerState, userId: string, credits: bigint): Allocation[] {
  if (!state.userExists(userId)) throw notFound('user_id', `unknown user "${userId}"`);
  const allocation = state.allocate(userId, credits);
  if (allocation === null) {
    throw refused(
      'INSUFFICIENT_CREDITS',
      `user "${userId}" has ${state.availableCredits(userId)} available credits; ${credits} requested`,
    );
  }
  return allocation;
}

/**
 * Each lot's deferred revenue, followed through one entry: every credit that leaves a lot
 * (spent, expired, clawed back) takes its proportional share of what is still deferred,
 * computed against the lot's balance after the entry's earlier legs. A lot emptied by one
 * entry in several legs therefore releases all of its deferred money, to the micro.
 */
export class LotMoney {
  readonly #state: LedgerState;
  readonly #left = new Map<bigint, { balance: bigint; deferred: bigint }>();
  readonly #breakage = new Map<bigint, bigint>();

  constructor(state: LedgerState) {
    this.#state = state;
  }

  /** The deferred micros that go with `credits` leaving the lot, or 0 for a free lot. */
  take(lotId: bigint, credits: bigint): bigint {
    const lot = this.#state.lot(lotId);
    if (lot.deferredAccountId === null) return 0n;
    let left = this.#left.get(lotId);
    if (!left) {
      const deferred = this.#state.account(lot.deferredAccountId);
      left = { balance: this.#state.lotBalance(lotId), deferred: deferred.creditsPosted - deferred.debitsPosted };
      this.#left.set(lotId, left);
    }
    const share = recognizedMicros(left.deferred, left.balance, credits);
    left.balance -= credits;
    left.deferred -= share;
    return share;
  }

  /** Records deferred money of a lot sent to (positive) or taken back from (negative) breakage. */
  addBreakage(lotId: bigint, micros: bigint): void {
    this.#breakage.set(lotId, (this.#breakage.get(lotId) ?? 0n) + micros);
  }

  /**
   * The entry's lot updates with each lot's breakage total brought up to date. `updates` are
   * the command's own changes to lots (expiry_swept, refunded_micros); one row per lot results.
   */
  lotUpdates(updates: readonly LotState[]): LotState[] {
    const byId = new Map(updates.map((lot) => [lot.accountId, { ...lot }]));
    for (const [lotId, micros] of this.#breakage) {
      if (micros === 0n) continue;
      const lot = byId.get(lotId) ?? { ...this.#state.lot(lotId) };
      lot.breakageMicros += micros;
      byId.set(lotId, lot);
    }
    return [...byId.values()];
  }

  /** Deferred micros still in the lot after the legs taken so far. */
  deferredLeft(lotId: bigint): bigint {
    const lot = this.#state.lot(lotId);
    if (lot.deferredAccountId === null) return 0n;
    const left = this.#left.get(lotId);
    if (left) return left.deferred;
    const deferred = this.#state.account(lot.deferredAccountId);
    return deferred.creditsPosted - deferred.debitsPosted;
  }
}

/** A money leg from a lot's deferred revenue to a platform account, if there is money to move. */
function deferredLeg(state: LedgerState, lotId: bigint, micros: bigint, to: keyof MoneyAccounts): TransferDraft[] {
  const lot = state.lot(lotId);
  if (micros === 0n || lot.deferredAccountId === null || lot.currency === null) return [];
  return [
    { kind: 'POSTED', debit: lot.deferredAccountId, credit: state.money(lot.currency)[to], amount: micros, unit: lot.currency, pending: null },
  ];
}

/** Credits spent: each paid lot's share of deferred revenue becomes recognised revenue. */
export function recognitionTransfers(state: LedgerState, money: LotMoney, spent: readonly Allocation[]): TransferDraft[] {
  return spent.flatMap(({ lotId, credits }) => deferredLeg(state, lotId, money.take(lotId, credits), 'recognized'));
}

/**
 * Credits expired: lot → platform.credits_expired, and the lot's share of deferred revenue
 * becomes breakage.
 */
export function expiryTransfers(state: LedgerState, money: LotMoney, lotId: bigint, credits: bigint): TransferDraft[] {
  if (credits === 0n) return [];
  const share = money.take(lotId, credits);
  money.addBreakage(lotId, share);
  return [creditTransfer('POSTED', lotId, state.platform.expired, credits), ...deferredLeg(state, lotId, share, 'breakage')];
}

export function breakageTransfers(state: LedgerState, money: LotMoney, lotId: bigint, micros: bigint): TransferDraft[] {
  money.addBreakage(lotId, micros);
  return deferredLeg(state, lotId, micros, 'breakage');
}

export function refundTransfers(state: LedgerState, lotId: bigint, micros: bigint): TransferDraft[] {
  return deferredLeg(state, lotId, micros, 'refunds');
}

/** The upstream's bill for the work: an expense and what the platform owes for it. */
export function upstreamTransfers(state: LedgerState, upstream: UpstreamCost | null): TransferDraft[] {
  if (upstream === null || upstream.amountMicros === 0n) return [];
  const money = state.money(upstream.currency);
  return [
    {
      kind: 'POSTED',
      debit: money.upstreamCost,
      credit: money.upstreamPayable,
      amount: upstream.amountMicros,
      unit: upstream.currency,
      pending: null,
    },
  ];
}

export function upstreamMetadata(upstream: UpstreamCost | null, metadata: Record<string, string>) {
  if (upstream === null) return metadata;
  return {
    ...metadata,
    'upstream.amount_micros': upstream.amountMicros.toString(),
    'upstream.currency': upstream.currency,
    ...(upstream.requestId ? { 'upstream.request_id': upstream.requestId } : {}),
    ...(upstream.model ? { 'upstream.model': upstream.model } : {}),
  };
}

export function creditTransfer(
  kind: TransferDraft['kind'],
  debit: bigint,
  credit: bigint,
  amount: bigint,
  pending: TransferDraft['pending'] = null,
): TransferDraft {
  return { kind, debit, credit, amount, unit: creditUnit, pending };
}
