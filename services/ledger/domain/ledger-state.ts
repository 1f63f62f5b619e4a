import { entryJsonColumns, hashEntryRecord } from './canonical.js';
import { allocate, type DrawableLot } from './drawdown.js';
import { LedgerError, refused } from './errors.js';
import { limits } from './limits.js';
import type {
  AccountKind,
  Allocation,
  Bucket,
  EntryKind,
  EntryRecord,
  HoldStatus,
  Metadata,
  TransferKind,
  TransferRecord,
  Unit,
  WriteResult,
} from './types.js';
import { flagNoOverdraft } from './types.js';

export interface AccountState {
  id: bigint;
  code: string;
  unit: Unit;
  kind: AccountKind;
  userId: string | null;
  flags: number;
  debitsPosted: bigint;
  creditsPosted: bigint;
  debitsPending: bigint;
  creditsPending: bigint;
  version: bigint;
}

export interface LotState {
  accountId: bigint;
  userId: string;
  bucket: Bucket;
  grantedCredits: bigint;
  effectiveAt: Date;
  expiresAt: Date | null;
  priority: number;
  costBasisMicros: bigint;
  currency: string | null;
  deferredAccountId: bigint | null;
  externalRef: string | null;
  entrySeq: bigint;
  plan: string | null;
  periodStart: Date | null;
  refundedMicros: bigint;
  /** Deferred money sent to breakage by this lot's expiries, less what refunds took back. */
  breakageMicros: bigint;
  /** The part of refundedMicros that disputes took and no won dispute gave back. */
  disputedMicros: bigint;
  /**
   * Credits refunds could not claw back because a hold had them: clawed back when a hold gives
   * credits back to this lot; never more than the lot's held credits.
   */
  clawbackOwedCredits: bigint;
  expirySwept: boolean;
  /** The Grant or Purchase that created the lot was reversed: no refund of it, no credits back to it. */
  reversed: boolean;
  /** The entry that last refunded or disputed the lot: what a reversal may give back depends on it. */
  refundedSeq: bigint | null;
}

/** One pending transfer of a hold: a lot's share of the reservation. */
export interface PendingLeg {
  seq: bigint;
  idx: number;
  lotId: bigint;
  amount: bigint;
}

export interface HoldState {
  id: string;
  userId: string;
  reserveSeq: bigint;
  /** When its Reserve was recorded: a hold lives at most holdLifetimeMsMax from then. */
  reservedAt: Date;
  credits: bigint;
  expiresAt: Date;
  status: HoldStatus;
  closedSeq: bigint | null;
  capturedCredits: bigint | null;
  legs: PendingLeg[];
}

export interface MoneyAccounts {
  clearing: bigint;
  recognized: bigint;
  breakage: bigint;
  refunds: bigint;
  upstreamCost: bigint;
  upstreamPayable: bigint;
}

/** Ids of the platform accounts, resolved once at start-up. */
export interface PlatformAccounts {
  issued: bigint;
  consumed: bigint;
  expired: bigint;
  clawedBack: bigint;
  money: ReadonlyMap<string, MoneyAccounts>;
  /** Every platform account id with its code and unit. */
  all: ReadonlyMap<bigint, { code: string; unit: Unit }>;
}

/** An entry as a reversal needs it: what it moved, and whether it was reversed already. */
export interface ReversibleEntry {
  seq: bigint;
  kind: EntryKind;
  userId: string | null;
  holdId: string | null;
  reversesSeq: bigint | null;
  reversedBy: bigint | null;
  /** Read by ReinstateDispute: a refund's reason and lot. */
  metadata: Metadata;
  transfers: { kind: TransferKind; debit: bigint; credit: bigint; amount: bigint; unit: Unit }[];
}

export interface StoredKey {
  requestHash: Buffer;
  result: WriteResult;
}

export interface TransferDraft {
  kind: TransferKind;
  debit: bigint;
  credit: bigint;
  amount: bigint;
  unit: Unit;
  pending: { seq: bigint; idx: number } | null;
}

/** What a command wants to write; `post` checks it against the accounts before anything changes. */
export interface EntryDraft {
  kind: EntryKind;
  userId: string | null;
  holdId: string | null;
  effectiveAt: Date;
  policyVersion: string | null;
  allocation: Allocation[] | null;
  metadata: Metadata;
  transfers: TransferDraft[];
  newAccounts: AccountState[];
  newLot: LotState | null;
  /** New state of existing lots whose bookkeeping this entry changes (refunds, expiry). */
  lotUpdates: LotState[];
  /** The hold's state after this entry (new or changed). */
  hold: HoldState | null;
  /** For a reversal: the entry it mirrors. */
  reversesSeq: bigint | null;
  result: Omit<WriteResult, 'entryId' | 'replayed'>;
}

/**
 * A change of lot bookkeeping that moves nothing, so it has no entry: an expired lot with
 * nothing left unheld marked as finished by the expiry sweeper. It goes through the batch like
 * an entry, under the batch's locks, so it can neither overwrite nor be overwritten by a batch's
 * own write of the lot. The audit accepts the mark when its rule holds on the rebuilt state.
 */
export interface BookkeepingDraft {
  kind: 'BOOKKEEPING';
  lotUpdates: LotState[];
  result: Omit<WriteResult, 'entryId' | 'replayed'>;
}

export interface PostContext {
  idempotencyKey: string;
  requestHash: Buffer;
  actor: string;
}

export interface HoldPolicy {
  holdTtlMsDefault: number;
  holdTtlMsMax: number;
  /**
   * A hold's whole life, ExtendHold included. Without it a worker (or a bug) extending forever
   * would keep credits of an expired lot capturable indefinitely.
   */
  holdLifetimeMsMax: number;
}

export interface LedgerStateInit {
  now: Date;
  headSeq: bigint;
  headHash: Buffer;
  users: Iterable<string>;
  accounts: Iterable<AccountState>;
  lots: Iterable<LotState>;
  holds: Iterable<HoldState>;
  keys: ReadonlyMap<string, StoredKey>;
  /** external_ref → entry seq of purchases already in the journal. */
  externalRefs: ReadonlyMap<string, bigint>;
  /** `${userId}|${periodStart ISO}` of subscription periods already granted → entry seq. */
  subscriptionPeriods: ReadonlyMap<string, bigint>;
  /** Entries reversals in this batch may mirror, with whether they were reversed already. */
  reversible: ReadonlyMap<bigint, ReversibleEntry>;
  platform: PlatformAccounts;
  /**
   * The platform accounts' totals before this batch, read under the journal head's lock (so
   * exact: every batch of every process holds it). Used only for the int64 bound; the batch
   * still writes platform changes as increments.
   */
  platformTotals: ReadonlyMap<bigint, Totals>;
  /** Pre-allocated ids for the accounts this batch may create. */
  accountIds: bigint[];
  holdPolicy: HoldPolicy;
}

export interface Totals {
  debitsPosted: bigint;
  creditsPosted: bigint;
  debitsPending: bigint;
  creditsPending: bigint;
  version: bigint;
}

export interface AccountDelta extends Totals {
  id: bigint;
}

/**
 * The part of the ledger one batch touches, held in memory while the batch's commands are
 * applied one after another. Commands read it to decide, then `post` one EntryDraft each:
 * post checks every account first and changes nothing unless all checks pass, so a refused
 * command leaves no trace. At the end the batch writes what `post` accumulated.
 *
 * Platform accounts are not loaded: their state here is a delta from zero, written as an
 * increment, so that they are never read or locked per command (ledger README §2, §5).
 */
export class LedgerState {
  readonly now: Date;
  readonly platform: PlatformAccounts;
  readonly holdPolicy: HoldPolicy;
  readonly entries: EntryRecord[] = [];

  #headSeq: bigint;
  #headHash: Buffer;
  readonly #users: Set<string>;
  readonly #newUsers = new Set<string>();
  readonly #accounts = new Map<bigint, AccountState>();
  readonly #initial = new Map<bigint, Totals>();
  readonly #newAccounts: AccountState[] = [];
  readonly #lotsByUser = new Map<string, LotState[]>();
  readonly #lots = new Map<bigint, LotState>();
  readonly #lotByRef = new Map<string, bigint>();
  readonly #newLots: LotState[] = [];
  readonly #holds = new Map<string, HoldState>();
  readonly #holdsInserted = new Set<string>();
  readonly #holdsChanged = new Set<string>();
  readonly #keys: Map<string, StoredKey>;
  readonly #externalRefs: Map<string, bigint>;
  readonly #subscriptionPeriods: Map<string, bigint>;
  readonly #reversible: Map<bigint, ReversibleEntry>;
  readonly #lotsChanged = new Set<bigint>();
  readonly #accountIds: bigint[];
  readonly #platformTotals: ReadonlyMap<bigint, Totals>;

  constructor(init: LedgerStateInit) {
    this.now = init.now;
    this.platform = init.platform;
    this.holdPolicy = init.holdPolicy;
    this.#headSeq = init.headSeq;
    this.#headHash = init.headHash;
    this.#users = new Set(init.users);
    for (const account of init.accounts) {
      this.#accounts.set(account.id, account);
      this.#initial.set(account.id, totalsOf(account));
    }
    for (const lot of init.lots) this.#addLot(lot);
    for (const hold of init.holds) this.#holds.set(hold.id, hold);
    this.#keys = new Map(init.keys);
    this.#externalRefs = new Map(init.externalRefs);
    this.#subscriptionPeriods = new Map(init.subscriptionPeriods);
    this.#reversible = new Map(init.reversible);
    this.#accountIds = [...init.accountIds];
    this.#platformTotals = init.platformTotals;
  }

  /** The sequence number the next posted entry will get. */
  get nextSeq(): bigint {
    return this.#headSeq + 1n;
  }

  get headSeq(): bigint {
    return this.#headSeq;
  }

  get headHash(): Buffer {
    return this.#headHash;
  }

  userExists(userId: string): boolean {
    return this.#users.has(userId);
  }

  account(id: bigint): AccountState {
    const account = this.#accounts.get(id);
    if (!account) throw new Error(`ledger state: account ${id} was not loaded`);
    return account;
  }

  lot(id: bigint): LotState {
    const lot = this.#lots.get(id);
    if (!lot) throw new Error(`ledger state: lot ${id} was not loaded`);
    return lot;
  }

  hold(id: string): HoldState | undefined {
    return this.#holds.get(id);
  }

  storedKey(key: string): StoredKey | undefined {
    return this.#keys.get(key);
  }

  externalRefEntry(ref: string): bigint | undefined {
    return this.#externalRefs.get(ref);
  }

  subscriptionPeriodEntry(userId: string, periodStart: Date): bigint | undefined {
    return this.#subscriptionPeriods.get(periodKey(userId, periodStart));
  }

  /** The loaded lot bought with `externalRef`, if any. */
  lotIdForExternalRef(externalRef: string): bigint | undefined {
    return this.#lotByRef.get(externalRef);
  }

  reversible(seq: bigint): ReversibleEntry | undefined {
    return this.#reversible.get(seq);
  }

  /** The user's lots that still hold posted credits, in no particular order. */
  liveLots(userId: string): readonly LotState[] {
    return this.#lotsByUser.get(userId) ?? [];
  }

  /** A lot's credits not under a hold (expired or not). */
  lotUnheld(lotId: bigint): bigint {
    const a = this.account(lotId);
    return a.creditsPosted - a.debitsPosted - a.debitsPending;
  }

  isExpired(lot: LotState): boolean {
    return lot.expiresAt !== null && lot.expiresAt.getTime() <= this.now.getTime();
  }

  money(currency: string): MoneyAccounts {
    const accounts = this.platform.money.get(currency);
    // Commands draft before anything is posted, so this refusal leaves nothing half-written.
    // A process loads every currency's platform accounts at start; one created by another
    // process since (configured with more currencies) is unknown here until a restart.
    if (!accounts) {
      throw new LedgerError(
        'UNAVAILABLE',
        `this ledger process has no platform accounts for ${currency} (created after it started); retry on another instance`,
      );
    }
    return accounts;
  }

  allocateAccountId(): bigint {
    const id = this.#accountIds.shift();
    if (id === undefined) throw new Error('ledger state: ran out of pre-allocated account ids');
    return id;
  }

  /** A lot's posted balance: credits in it, held ones included. */
  lotBalance(lotId: bigint): bigint {
    const a = this.account(lotId);
    return a.creditsPosted - a.debitsPosted;
  }

  /** Lots a debit may draw from now: effective, not expired, with credits not under a hold. */
  drawableLots(userId: string): DrawableLot[] {
    const now = this.now.getTime();
    const drawable: DrawableLot[] = [];
    for (const lot of this.#lotsByUser.get(userId) ?? []) {
      if (lot.effectiveAt.getTime() > now) continue;
      if (lot.expiresAt !== null && lot.expiresAt.getTime() <= now) continue;
      const a = this.account(lot.accountId);
      const available = a.creditsPosted - a.debitsPosted - a.debitsPending;
      if (available <= 0n) continue;
      drawable.push({
        lotId: lot.accountId,
        bucket: lot.bucket,
        expiresAt: lot.expiresAt,
        priority: lot.priority,
        entrySeq: lot.entrySeq,
        available,
      });
    }
    return drawable;
  }

  availableCredits(userId: string): bigint {
    return this.drawableLots(userId).reduce((sum, lot) => sum + lot.available, 0n);
  }

  allocate(userId: string, credits: bigint): Allocation[] | null {
    return allocate(this.drawableLots(userId), credits);
  }

  /**
   * Applies one entry. Phase one applies the transfers to copies of the accounts and checks
   * every rule; phase two, reached only when all passed, makes the copies current and appends
   * the entry to the hash chain. A failed check here means a command drafted something its own
   * checks should have refused: it is a bug, thrown as a plain Error, and nothing changes.
   */
  /** Applies a bookkeeping-only change; its result has entryId 0 (no entry was written). */
  keep(draft: BookkeepingDraft): WriteResult {
    this.#checkLotUpdates('keep', draft.lotUpdates);
    // Nothing below may fail.
    this.#applyLotUpdates(draft.lotUpdates);
    return { ...draft.result, entryId: 0n, replayed: false };
  }

  /** Before phase two: every lot an update names was loaded by the batch. */
  #checkLotUpdates(by: string, updates: readonly LotState[]): void {
    for (const lot of updates) {
      if (!this.#lots.has(lot.accountId)) throw new Error(`${by}: lot ${lot.accountId} was not loaded`);
    }
  }

  /** Phase two: the lots take their new bookkeeping, and are written with the batch. */
  #applyLotUpdates(updates: readonly LotState[]): LotState[] {
    return updates.map((lot) => {
      const current = this.#lots.get(lot.accountId)!;
      Object.assign(current, lot);
      if (!this.#newLots.includes(current)) this.#lotsChanged.add(lot.accountId);
      return current;
    });
  }

  post(ctx: PostContext, draft: EntryDraft): EntryRecord {
    const seq = this.nextSeq;
    const scratch = new Map<bigint, AccountState>();
    for (const account of draft.newAccounts) {
      if (this.#accounts.has(account.id)) throw new Error(`post: account ${account.id} exists`);
      scratch.set(account.id, { ...account });
    }
    const touch = (id: bigint): AccountState => {
      let account = scratch.get(id);
      if (account) return account;
      const current = this.#accounts.get(id);
      if (current) {
        account = { ...current };
      } else {
        const platform = this.platform.all.get(id);
        if (!platform) throw new Error(`post: account ${id} was not loaded`);
        account = platformDelta(id, platform.code, platform.unit);
      }
      scratch.set(id, account);
      return account;
    };

    const transfers: TransferRecord[] = draft.transfers.map((t, idx) => {
      const debit = touch(t.debit);
      const credit = touch(t.credit);
      if (t.amount <= 0n) throw new Error(`post: transfer ${idx} amount ${t.amount} is not positive`);
      if (debit.unit !== t.unit || credit.unit !== t.unit) {
        throw new Error(`post: transfer ${idx} in ${t.unit} between ${debit.unit} and ${credit.unit}`);
      }
      if (t.debit === t.credit) throw new Error(`post: transfer ${idx} debits and credits one account`);
      if ((t.kind === 'POST_PENDING' || t.kind === 'VOID_PENDING') !== (t.pending !== null)) {
        throw new Error(`post: transfer ${idx} of kind ${t.kind} has a wrong pending reference`);
      }
      applyTransfer(debit, credit, t.kind, t.amount);
      debit.version += 1n;
      credit.version += 1n;
      return {
        idx,
        kind: t.kind,
        debitAccountId: t.debit,
        creditAccountId: t.credit,
        amount: t.amount,
        unit: t.unit,
        pendingSeq: t.pending?.seq ?? null,
        pendingIdx: t.pending?.idx ?? null,
        debitVersion: versionAfter(debit),
        debitBalanceAfter: balanceAfter(debit),
        debitHeldAfter: heldAfter(debit),
        creditVersion: versionAfter(credit),
        creditBalanceAfter: balanceAfter(credit),
        creditHeldAfter: heldAfter(credit),
      };
    });

    for (const account of scratch.values()) {
      const base = account.kind === 'PLATFORM' ? (this.#platformTotals.get(account.id) ?? zeroTotals()) : zeroTotals();
      for (const total of ['debitsPosted', 'creditsPosted', 'debitsPending', 'creditsPending'] as const) {
        if (base[total] + account[total] > limits.accountTotalMax) {
          throw refused(
            'ACCOUNT_LIMIT_REACHED',
            `account ${account.code}: ${total} would exceed ${limits.accountTotalMax} (int64); nothing was written`,
          );
        }
      }
      if (account.kind === 'PLATFORM') continue;
      if (
        account.debitsPosted < 0n ||
        account.creditsPosted < 0n ||
        account.debitsPending < 0n ||
        account.creditsPending < 0n
      ) {
        throw new Error(`post: account ${account.id} would have a negative total`);
      }
      if ((account.flags & flagNoOverdraft) !== 0 && account.debitsPosted + account.debitsPending > account.creditsPosted) {
        throw new Error(`post: account ${account.id} would be overdrawn`);
      }
    }

    this.#checkLotUpdates('post', draft.lotUpdates);

    // Phase two: nothing below may fail.
    for (const account of draft.newAccounts) {
      this.#newAccounts.push(account);
      this.#initial.set(account.id, totalsOf(account));
    }
    for (const [id, account] of scratch) {
      if (!this.#initial.has(id)) this.#initial.set(id, zeroTotals());
      this.#accounts.set(id, account);
    }
    if (draft.newLot) {
      this.#addLot(draft.newLot);
      this.#newLots.push(draft.newLot);
      if (draft.newLot.externalRef !== null) this.#externalRefs.set(draft.newLot.externalRef, seq);
      if (!this.#users.has(draft.newLot.userId)) {
        this.#users.add(draft.newLot.userId);
        this.#newUsers.add(draft.newLot.userId);
      }
    }
    // The lots as this entry leaves them, journaled in its hashed bytes (ledger README §4).
    const lotsAfter = new Map<bigint, LotState>();
    if (draft.newLot) lotsAfter.set(draft.newLot.accountId, draft.newLot);
    for (const current of this.#applyLotUpdates(draft.lotUpdates)) lotsAfter.set(current.accountId, current);
    if (draft.newLot?.periodStart) {
      this.#subscriptionPeriods.set(periodKey(draft.newLot.userId, draft.newLot.periodStart), seq);
    }
    if (draft.reversesSeq !== null) {
      const original = this.#reversible.get(draft.reversesSeq);
      if (original) original.reversedBy = seq;
    }
    if (draft.hold) {
      if (!this.#holds.has(draft.hold.id)) this.#holdsInserted.add(draft.hold.id);
      else if (!this.#holdsInserted.has(draft.hold.id)) this.#holdsChanged.add(draft.hold.id);
      this.#holds.set(draft.hold.id, draft.hold);
    }
    const result: WriteResult = { ...draft.result, entryId: seq, replayed: false };
    const entry: EntryRecord = {
      seq,
      kind: draft.kind,
      userId: draft.userId,
      holdId: draft.holdId,
      idempotencyKey: ctx.idempotencyKey,
      requestHash: ctx.requestHash,
      actor: ctx.actor,
      recordedAt: this.now,
      effectiveAt: draft.effectiveAt,
      policyVersion: draft.policyVersion,
      allocation: draft.allocation,
      metadata: draft.metadata,
      result,
      // Encoded now: a later entry of the batch may change the same lot objects.
      json: entryJsonColumns({ allocation: draft.allocation, metadata: draft.metadata, result, lots: [...lotsAfter.values()] }),
      reversesSeq: draft.reversesSeq,
      prevHash: this.#headHash,
      hash: Buffer.alloc(0),
      transfers,
    };
    entry.hash = hashEntryRecord(entry);
    this.entries.push(entry);
    this.#headSeq = seq;
    this.#headHash = entry.hash;
    this.#keys.set(ctx.idempotencyKey, { requestHash: ctx.requestHash, result });
    return entry;
  }

  /** What the batch must write besides entries: new rows and changed totals. */
  changes(): {
    newUsers: string[];
    newAccounts: AccountState[];
    newLots: LotState[];
    accountDeltas: AccountDelta[];
    holdsInserted: HoldState[];
    holdsChanged: HoldState[];
    lotsChanged: LotState[];
  } {
    const accountDeltas: AccountDelta[] = [];
    for (const [id, initial] of this.#initial) {
      const account = this.#accounts.get(id);
      if (!account || account.version === initial.version) continue;
      accountDeltas.push({
        id,
        debitsPosted: account.debitsPosted - initial.debitsPosted,
        creditsPosted: account.creditsPosted - initial.creditsPosted,
        debitsPending: account.debitsPending - initial.debitsPending,
        creditsPending: account.creditsPending - initial.creditsPending,
        version: account.version - initial.version,
      });
    }
    // Sorted so that concurrent writers update rows in one order.
    accountDeltas.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const pick = (ids: Set<string>): HoldState[] => [...ids].map((id) => this.#holds.get(id)!);
    return {
      newUsers: [...this.#newUsers].sort(),
      newAccounts: this.#newAccounts,
      newLots: this.#newLots,
      accountDeltas,
      holdsInserted: pick(this.#holdsInserted),
      holdsChanged: pick(this.#holdsChanged),
      lotsChanged: [...this.#lotsChanged].map((id) => this.#lots.get(id)!),
    };
  }

  #addLot(lot: LotState): void {
    if (this.#lots.has(lot.accountId)) return;
    this.#lots.set(lot.accountId, lot);
    if (lot.externalRef !== null) this.#lotByRef.set(lot.externalRef, lot.accountId);
    const list = this.#lotsByUser.get(lot.userId);
    if (list) list.push(lot);
    else this.#lotsByUser.set(lot.userId, [lot]);
  }
}

function periodKey(userId: string, periodStart: Date): string {
  return `${userId}|${periodStart.toISOString()}`;
}

function totalsOf(a: Totals): Totals {
  return {
    debitsPosted: a.debitsPosted,
    creditsPosted: a.creditsPosted,
    debitsPending: a.debitsPending,
    creditsPending: a.creditsPending,
    version: a.version,
  };
}

function zeroTotals(): Totals {
  return { debitsPosted: 0n, creditsPosted: 0n, debitsPending: 0n, creditsPending: 0n, version: 0n };
}

function platformDelta(id: bigint, code: string, unit: Unit): AccountState {
  return { id, code, unit, kind: 'PLATFORM', userId: null, flags: 0, ...zeroTotals() };
}

function applyTransfer(debit: AccountState, credit: AccountState, kind: TransferKind, amount: bigint): void {
  switch (kind) {
    case 'POSTED':
      debit.debitsPosted += amount;
      credit.creditsPosted += amount;
      return;
    case 'PENDING':
      debit.debitsPending += amount;
      credit.creditsPending += amount;
      return;
    case 'POST_PENDING':
      debit.debitsPending -= amount;
      debit.debitsPosted += amount;
      credit.creditsPending -= amount;
      credit.creditsPosted += amount;
      return;
    case 'VOID_PENDING':
      debit.debitsPending -= amount;
      credit.creditsPending -= amount;
      return;
  }
}

/** Balance-after columns: recorded for user-scoped accounts only (platform ones are aggregated). */
function versionAfter(account: AccountState): bigint | null {
  return account.kind === 'PLATFORM' ? null : account.version;
}

function balanceAfter(account: AccountState): bigint | null {
  return account.kind === 'PLATFORM' ? null : account.creditsPosted - account.debitsPosted;
}

function heldAfter(account: AccountState): bigint | null {
  return account.kind === 'PLATFORM' ? null : account.debitsPending;
}
