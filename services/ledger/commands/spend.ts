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
    const left = this.#leftOf(lotId);
    if (!left) return 0n;
    const share = recognizedMicros(left.deferred, left.balance, credits);
    left.balance -= credits;
    left.deferred -= share;
    return share;
  }

  /**
   * Credits leaving the lot with no money of their own: a clawback owed by an earlier refund,
   * whose money already left the deferred account then. The lot's remaining deferred money
   * stays with its remaining credits.
   */
  removeCredits(lotId: bigint, credits: bigint): void {
    const left = this.#leftOf(lotId);
    if (left) left.balance -= credits;
  }

  /** The lot's credits and deferred money left so far in this entry; null for a free lot. */
  #leftOf(lotId: bigint): { balance: bigint; deferred: bigint } | null {
    const lot = this.#state.lot(lotId);
    if (lot.deferredAccountId === null) return null;
    let left = this.#left.get(lotId);
    if (!left) {
      const deferred = this.#state.account(lot.deferredAccountId);
      left = { balance: this.#state.lotBalance(lotId), deferred: deferred.creditsPosted - deferred.debitsPosted };
      this.#left.set(lotId, left);
    }
    return left;
  }

  /** Deferred micros stranded in a lot this entry leaves without credits (0 otherwise). */
  stranded(lotId: bigint): bigint {
    const left = this.#left.get(lotId);
    return left && left.balance === 0n && left.deferred > 0n ? left.deferred : 0n;
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

/** Credits a closing hold gives back to one lot, and how much it held there in all. */
export interface LotReturn {
  lotId: bigint;
  /** Voided: released, timed out, or the uncaptured part of a capture. */
  returned: bigint;
  /** All of the hold's pending credits on this lot (captured ones included). */
  pendingClosed: bigint;
}

/**
 * What happens to credits a hold gives back (ledger README §3), in two steps of one entry.
 * `claw()`: credits an earlier refund or dispute could not claw back because this hold had them
 * are clawed back now. They take no money (the refund took it), so a capture recognises revenue
 * after this step, at the lot's remaining deferred money per remaining credit. The lot's owed
 * clawback never exceeds its held credits, so what a hold captured instead is consumed after the
 * refund and owed no more. `expire()`: the rest, returned to a lot that expired meanwhile, is
 * expired. A lot the clawback leaves without credits keeps no deferred money: the rounding rest
 * goes to breakage.
 */
export class HoldReturns {
  readonly lotUpdates: LotState[] = [];
  clawedBack = 0n;
  expired = 0n;
  readonly #rest = new Map<bigint, bigint>();

  constructor(
    private readonly state: LedgerState,
    private readonly money: LotMoney,
    private readonly returns: readonly LotReturn[],
  ) {}

  claw(): TransferDraft[] {
    const out: TransferDraft[] = [];
    for (const r of this.returns) {
      const lot = this.state.lot(r.lotId);
      let owed = lot.clawbackOwedCredits;
      const claw = r.returned < owed ? r.returned : owed;
      if (claw > 0n) {
        out.push(creditTransfer('POSTED', r.lotId, this.state.platform.clawedBack, claw));
        this.money.removeCredits(r.lotId, claw);
        owed -= claw;
        this.clawedBack += claw;
        const stranded = this.money.stranded(r.lotId);
        if (stranded > 0n) out.push(...breakageTransfers(this.state, this.money, r.lotId, stranded));
      }
      this.#rest.set(r.lotId, r.returned - claw);
      const heldAfter = this.state.account(r.lotId).debitsPending - r.pendingClosed;
      if (owed > heldAfter) owed = heldAfter > 0n ? heldAfter : 0n;
      if (owed !== lot.clawbackOwedCredits) this.lotUpdates.push({ ...lot, clawbackOwedCredits: owed });
    }
    return out;
  }

  expire(): TransferDraft[] {
    const out: TransferDraft[] = [];
    for (const r of this.returns) {
      const rest = this.#rest.get(r.lotId) ?? r.returned;
      if (rest > 0n && this.state.isExpired(this.state.lot(r.lotId))) {
        out.push(...expiryTransfers(this.state, this.money, r.lotId, rest));
        this.expired += rest;
      }
    }
    return out;
  }
}

/** Metadata of an entry that clawed back credits a refund was owed: hashed with the entry. */
export function clawbackMetadata(clawedBack: bigint): Record<string, string> {
  return clawedBack > 0n ? { clawed_back_credits: clawedBack.toString() } : {};
}
