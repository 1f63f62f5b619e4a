import { genesisHashHex, recomputeHash } from './audit-hash.js';
import { add, eq, parseInt as toInt, sub, type Int } from './exact-int.js';
import type { Finding, JournalRow, TransferRow } from './journal-row.js';

/**
 * The audit's engine: walks the journal in sequence order, one entry at a time, and rebuilds
 * from it alone what the tables should hold (accounts with their totals and versions, lots,
 * holds), checking every entry on the way (ledger README §4):
 *
 * - the sequence has no gaps, each `prev_hash` is the previous entry's hash, and each hash
 *   recomputes (audit-hash.ts, an encoder of its own);
 * - every transfer moves a positive amount between two different accounts of its unit, and
 *   the version and balances recorded on user-scoped sides follow from the transfers before it
 *   (so a changed amount is located to its transfer and column, not only to its entry);
 * - pending transfers are posted or voided at most once, between the same accounts;
 * - no user-scoped account is ever overdrawn (holds included);
 * - lots are created by the entry that says so, with the credits and money it moved, and their
 *   terms never change afterwards; each external reference buys one lot;
 * - holds open with a reservation and close once.
 *
 * It keeps state per account, lot and open hold, never per entry: memory grows with the
 * number of users, not with the length of the journal. Closed holds are handed to `onHoldClosed`
 * (compared with the table in pages by the caller) and dropped.
 *
 * A replay that starts after entry 1 (`--from`) cannot know what came before: the chain is
 * anchored at the first entry's prev_hash (checked against a checkpoint when one matches),
 * accounts are seeded from the first balances recorded in the range, and references to
 * earlier pending transfers, lots or holds are not checked. Such a replay reports `partial`.
 */

export interface AccountRebuild {
  id: string;
  unit: string;
  debitsPosted: Int;
  creditsPosted: Int;
  debitsPending: Int;
  creditsPending: Int;
  version: Int;
  /** credits_posted − debits_posted, tracked apart so a seeded (partial) account still checks. */
  balance: Int;
  held: Int;
  /** Totals are only known when the account was seen from its first transfer. */
  complete: boolean;
  /** The entry that last touched the account (where a disagreement with the table appeared). */
  lastSeq: string;
}

/** A lot as the journal leaves it: the `lots` column's latest record of it. */
export type LotRebuild = Record<string, unknown> & { account_id: string; user_id: string; entry_seq: string };

export interface HoldRebuild {
  id: string;
  user_id: string;
  reserve_seq: string;
  credits: bigint;
  expires_at: string;
  status: 'OPEN' | 'CAPTURED' | 'RELEASED' | 'EXPIRED';
  closed_seq: string | null;
  captured_credits: bigint | null;
  /** Pending legs not yet resolved, `${seq}/${idx}`. */
  legs: string[];
}

export interface CheckpointAnchor {
  seq: string;
  hash: string;
  /** For messages: when and by whom it was signed. */
  label: string;
}

export interface ReplayOptions {
  /** The entry the replay starts at (1 = genesis). */
  fromSeq: bigint;
  /** Published checkpoints (already signature-checked) the chain must pass through. */
  checkpoints?: readonly CheckpointAnchor[];
  /** Called with each hold once it is closed (its final state). */
  onHoldClosed?: (hold: HoldRebuild) => void;
  /** Findings kept in full; beyond this only counted. */
  findingsMax?: number;
}

/** Lot fields fixed when the lot is created: a later record of the lot must repeat them. */
const lotTerms = [
  'account_id', 'user_id', 'bucket', 'granted_credits', 'effective_at', 'expires_at', 'priority',
  'cost_basis_micros', 'currency', 'deferred_account_id', 'external_ref', 'entry_seq', 'plan', 'period_start',
] as const;
const lotCreators = new Set(['GRANT', 'PURCHASE', 'RENEW_SUBSCRIPTION']);
const transferKinds = new Set(['POSTED', 'PENDING', 'POST_PENDING', 'VOID_PENDING']);
const closing: Record<string, HoldRebuild['status']> = { CAPTURE: 'CAPTURED', RELEASE: 'RELEASED', HOLD_TIMEOUT: 'EXPIRED' };

interface PendingLeg {
  debit: string;
  credit: string;
  remaining: Int;
}

export class JournalReplay {
  readonly accounts = new Map<string, AccountRebuild>();
  readonly lots = new Map<string, LotRebuild>();
  /** deferred-revenue account id → lot id. */
  readonly deferredOf = new Map<string, string>();
  readonly openHolds = new Map<string, HoldRebuild>();
  readonly findings: Finding[] = [];
  findingCount = 0;
  entries = 0;
  transfers = 0;
  holdsSeen = 0;
  firstSeq: string | null = null;
  lastSeq: string | null = null;
  lastHash: string;
  /** The prev_hash of the first entry replayed: where the chain was anchored. */
  anchorHash: string | null = null;
  readonly partial: boolean;
  /** Checkpoints the chain passed through with the same hash. */
  readonly checkpointsMatched: string[] = [];

  readonly #pending = new Map<string, PendingLeg>();
  readonly #externalRefs = new Map<string, string>();
  readonly #checkpoints: Map<string, CheckpointAnchor>;
  readonly #findingsMax: number;
  readonly #onHoldClosed: (hold: HoldRebuild) => void;
  /** A number: sequence numbers stay far below 2^53. */
  #expectedSeq: number;
  #lastGoodCheckpoint: string | null = null;

  constructor(options: ReplayOptions) {
    this.partial = options.fromSeq > 1n;
    this.#expectedSeq = Number(options.fromSeq);
    this.lastHash = genesisHashHex;
    this.#checkpoints = new Map((options.checkpoints ?? []).map((c) => [c.seq, c]));
    this.#findingsMax = options.findingsMax ?? 1_000;
    this.#onHoldClosed = options.onHoldClosed ?? (() => {});
  }

  /** The first finding by journal position, or the first table finding when no entry is bad. */
  get firstFinding(): Finding | undefined {
    // Earliest in the journal; at one entry, the most specific (a missing entry, or a named
    // column of a transfer or lot rather than "the hash does not recompute").
    // A missing entry first (what follows from it comes after), a recomputed hash last.
    const generic = (f: Finding) => (f.table === 'entries' && f.column === 'seq' ? -1 : f.table === 'entries' && f.column === 'hash' ? 1 : 0);
    let best: Finding | undefined;
    for (const f of this.findings) {
      if (f.seq === null) continue;
      const order = best === undefined ? -1 : BigInt(f.seq) < BigInt(best.seq!) ? -1 : BigInt(f.seq) > BigInt(best.seq!) ? 1 : generic(f) - generic(best);
      if (order < 0) best = f;
    }
    return best ?? this.findings[0];
  }

  report(f: Finding): void {
    this.findingCount++;
    if (this.findings.length < this.#findingsMax) this.findings.push(f);
  }

  /** Checks one entry and applies it to the rebuilt state. Entries must come in seq order. */
  apply(row: JournalRow): void {
    const seq = row.seq;
    const find = (table: string, column: string, key: string, expected: unknown, found: unknown, message: string) =>
      this.report({ seq, table, column, key, expected: show(expected), found: show(found), message });
    this.entries++;
    this.transfers += row.transfers.length;
    if (this.firstSeq === null) {
      this.firstSeq = seq;
      this.anchorHash = row.prev_hash;
      if (!this.partial) {
        if (row.prev_hash !== genesisHashHex) {
          find('entries', 'prev_hash', `entry ${seq}`, genesisHashHex, row.prev_hash, 'the first entry must follow the genesis hash');
        }
      } else {
        this.lastHash = row.prev_hash;
        const anchor = this.#checkpoints.get((BigInt(seq) - 1n).toString());
        if (anchor) this.#checkCheckpoint(anchor, row.prev_hash, seq);
      }
    }

    // Invariant 5: gapless sequence, chained and recomputing hashes.
    const seqNumber = Number(seq);
    if (seqNumber !== this.#expectedSeq) {
      const missing = seqNumber > this.#expectedSeq;
      this.report({
        seq: missing ? this.#expectedSeq.toString() : seq, table: 'entries', column: 'seq', key: `entry ${this.#expectedSeq}`,
        expected: this.#expectedSeq.toString(), found: seq,
        message: missing
          ? `entr${seqNumber - this.#expectedSeq > 1 ? `ies ${this.#expectedSeq}…${seqNumber - 1} are` : `y ${this.#expectedSeq} is`} missing (deleted?)`
          : 'sequence numbers go backwards',
      });
    }
    this.#expectedSeq = seqNumber + 1;
    if (row.prev_hash !== this.lastHash) {
      find('entries', 'prev_hash', `entry ${seq}`, this.lastHash, row.prev_hash, 'the chain is broken: prev_hash is not the previous entry\'s hash');
    }
    let computed: string;
    try {
      computed = recomputeHash(row.prev_hash, row);
    } catch (error) {
      computed = `(cannot encode: ${(error as Error).message})`;
    }
    if (computed !== row.hash) {
      find('entries', 'hash', `entry ${seq}`, computed, row.hash,
        'the entry or one of its transfers was changed after it was written (the hash does not recompute)');
    }
    this.lastHash = row.hash;
    this.lastSeq = seq;
    const checkpoint = this.#checkpoints.get(seq);
    if (checkpoint) this.#checkCheckpoint(checkpoint, row.hash, seq);

    // Lots this entry creates or changes: registered before its transfers, which credit them.
    const created = this.#applyLots(row, find);

    // Transfers: units, amounts, pending references, versions and balances after.
    const pendingHere: string[] = [];
    for (let i = 0; i < row.transfers.length; i++) {
      const t = row.transfers[i]!;
      this.#applyTransfer(row, t, i, find);
      if (t.kind === 'PENDING') pendingHere.push(`${seq}/${t.idx}`);
    }
    const creditedBy = new Map<string, bigint>();
    if (created.length > 0) {
      for (const t of row.transfers) {
        if (t.kind === 'POSTED') creditedBy.set(t.credit_account_id, (creditedBy.get(t.credit_account_id) ?? 0n) + big(t.amount));
      }
    }

    // A lot's creating entry moves exactly its granted credits and its cost basis into it.
    for (const lot of created) {
      const granted = creditedBy.get(lot.account_id) ?? 0n;
      if (String(granted) !== String(lot.granted_credits)) {
        find('lots', 'granted_credits', `lot ${lot.account_id}`, granted, lot.granted_credits, 'the lot\'s granted credits differ from what its entry credited to it');
      }
      const deferred = lot.deferred_account_id as string | null;
      const paid = deferred === null ? 0n : (creditedBy.get(deferred) ?? 0n);
      if (String(paid) !== String(lot.cost_basis_micros)) {
        find('lots', 'cost_basis_micros', `lot ${lot.account_id}`, paid, lot.cost_basis_micros, 'the lot\'s cost basis differs from the money its entry deferred');
      }
    }
    if (lotCreators.has(row.kind) && !this.partial) {
      const lotId = (row.result as Record<string, unknown> | null)?.lot_id;
      if (!created.some((l) => l.account_id === lotId)) {
        find('entries', 'lots', `entry ${seq}`, `the terms of lot ${String(lotId)}`, 'none',
          `a ${row.kind} entry must journal the lot it creates`);
      }
    }

    this.#applyHold(row, pendingHere, find);
  }

  #checkCheckpoint(anchor: CheckpointAnchor, hash: string, seq: string): void {
    if (hash === anchor.hash) {
      this.checkpointsMatched.push(anchor.seq);
      this.#lastGoodCheckpoint = anchor.seq;
      return;
    }
    const after = this.#lastGoodCheckpoint ?? (this.partial ? null : '0');
    this.report({
      seq: anchor.seq,
      table: 'entries',
      column: 'hash',
      key: `entry ${anchor.seq}`,
      expected: anchor.hash,
      found: hash,
      message:
        `checkpoint ${anchor.label} does not match: history was rewritten at or before entry ${anchor.seq}` +
        (after !== null ? ` (after entry ${after}, the last checkpoint that matched)` : '') +
        ` even though the chain recomputes from entry ${seq}'s view`,
    });
  }

  #applyLots(
    row: JournalRow,
    find: (table: string, column: string, key: string, expected: unknown, found: unknown, message: string) => void,
  ): LotRebuild[] {
    const created: LotRebuild[] = [];
    if (row.lots === null || row.lots === undefined) return created;
    if (!Array.isArray(row.lots)) {
      find('entries', 'lots', `entry ${row.seq}`, 'an array of lots', typeof row.lots, 'malformed lots column');
      return created;
    }
    for (const raw of row.lots as Record<string, unknown>[]) {
      const id = raw?.account_id;
      if (typeof id !== 'string' || typeof raw.user_id !== 'string' || typeof raw.entry_seq !== 'string') {
        find('entries', 'lots', `entry ${row.seq}`, 'a lot with account_id, user_id and entry_seq', JSON.stringify(raw), 'malformed lot record');
        continue;
      }
      const lot = raw as LotRebuild;
      const earlier = this.lots.get(id);
      if (!earlier) {
        if (lot.entry_seq !== row.seq && !this.partial) {
          find('entries', 'lots', `lot ${id}`, `lot ${id} created by entry ${row.seq}`, `entry_seq ${lot.entry_seq}`,
            'a lot appears in the journal for the first time in an entry that did not create it');
        }
        if (lot.entry_seq === row.seq) {
          created.push(lot);
          if (!lotCreators.has(row.kind)) {
            find('entries', 'kind', `entry ${row.seq}`, [...lotCreators].join(' or '), row.kind, 'only grants, purchases and renewals create lots');
          }
          if (lot.external_ref !== null && lot.external_ref !== undefined) {
            const ref = String(lot.external_ref);
            const other = this.#externalRefs.get(ref);
            if (other !== undefined) {
              find('lots', 'external_ref', `lot ${id}`, `external_ref used once (lot ${other})`, ref, 'invariant 6: one external payment reference bought two lots');
            }
            this.#externalRefs.set(ref, id);
          }
        }
      } else {
        for (const term of lotTerms) {
          if (show(earlier[term]) !== show(lot[term])) {
            find('entries', `lots[${term}]`, `lot ${id}`, earlier[term], lot[term], `lot ${id}'s ${term} changed after it was created`);
          }
        }
      }
      this.lots.set(id, lot);
      if (typeof lot.deferred_account_id === 'string') this.deferredOf.set(lot.deferred_account_id, id);
    }
    return created;
  }

  #account(id: string, unit: string, seq: string): AccountRebuild {
    let a = this.accounts.get(id);
    if (!a) {
      a = {
        id, unit, debitsPosted: 0, creditsPosted: 0, debitsPending: 0, creditsPending: 0, version: 0,
        balance: 0, held: 0, complete: !this.partial, lastSeq: seq,
      };
      this.accounts.set(id, a);
    }
    return a;
  }

  /** Whether an account is user-scoped (a lot or a lot's deferred revenue) as far as the journal knows. */
  #userScoped(id: string, recordedVersion: string | null): boolean {
    if (this.lots.has(id) || this.deferredOf.has(id)) return true;
    // Before any lot record (partial replays), the recorded columns are all there is to go by.
    return this.partial && recordedVersion !== null;
  }

  #applyTransfer(
    row: JournalRow,
    t: TransferRow,
    i: number,
    find: (table: string, column: string, key: string, expected: unknown, found: unknown, message: string) => void,
  ): void {
    const seq = row.seq;
    const key = `transfer ${seq}/${t.idx}`;
    if (t.idx !== i) find('transfers', 'idx', key, i, t.idx, 'transfer indexes must run 0, 1, 2, … without gaps (a transfer was deleted?)');
    if (!transferKinds.has(t.kind)) find('transfers', 'kind', key, [...transferKinds].join('|'), t.kind, 'unknown transfer kind');
    let amount: Int;
    try {
      amount = toInt(t.amount);
    } catch {
      find('transfers', 'amount', key, 'an integer', t.amount, 'malformed amount');
      return;
    }
    if (amount <= 0) find('transfers', 'amount', key, '> 0', t.amount, 'amounts are positive');
    if (t.debit_account_id === t.credit_account_id) {
      find('transfers', 'credit_account_id', key, `not ${t.debit_account_id}`, t.credit_account_id, 'a transfer debits and credits two different accounts');
    }
    const debit = this.#account(t.debit_account_id, t.unit, seq);
    const credit = this.#account(t.credit_account_id, t.unit, seq);
    // Invariant 1: one unit per transfer, per account: what leaves one account arrives in the other.
    if (debit.unit !== t.unit) find('transfers', 'unit', key, debit.unit, t.unit, `account ${debit.id} holds ${debit.unit}`);
    if (credit.unit !== t.unit) find('transfers', 'unit', key, credit.unit, t.unit, `account ${credit.id} holds ${credit.unit}`);

    // Pending references: a post or void resolves part of an earlier pending transfer.
    if (t.kind === 'POST_PENDING' || t.kind === 'VOID_PENDING') {
      if (t.pending_seq === null || t.pending_idx === null) {
        find('transfers', 'pending_seq', key, 'a pending transfer', 'null', `a ${t.kind} names the pending transfer it resolves`);
      } else {
        const ref = `${t.pending_seq}/${t.pending_idx}`;
        const leg = this.#pending.get(ref);
        if (!leg) {
          if (!this.partial || BigInt(t.pending_seq) >= BigInt(this.firstSeq!)) {
            find('transfers', 'pending_seq', key, 'an open pending transfer', ref, 'resolves a pending transfer that does not exist or is already resolved');
          }
        } else {
          if (leg.debit !== t.debit_account_id || leg.credit !== t.credit_account_id) {
            find('transfers', 'debit_account_id', key, `${leg.debit} → ${leg.credit}`, `${t.debit_account_id} → ${t.credit_account_id}`,
              'a post or void must move between the accounts of its pending transfer');
          }
          if (amount > leg.remaining) {
            find('transfers', 'amount', key, `≤ ${leg.remaining}`, t.amount, `resolves more than pending transfer ${ref} has left`);
          }
          leg.remaining = sub(leg.remaining, amount);
          if (leg.remaining <= 0) this.#pending.delete(ref);
        }
      }
    } else if (t.pending_seq !== null || t.pending_idx !== null) {
      find('transfers', 'pending_seq', key, 'null', `${t.pending_seq}/${t.pending_idx}`, `a ${t.kind} transfer names no pending transfer`);
    }
    if (t.kind === 'PENDING') {
      this.#pending.set(`${seq}/${t.idx}`, { debit: t.debit_account_id, credit: t.credit_account_id, remaining: amount });
    }

    this.#move(seq, debit, 'debit', t, amount, key, find);
    this.#move(seq, credit, 'credit', t, amount, key, find);
  }

  /** One side of a transfer: totals, version, and the balances recorded after it. */
  #move(
    seq: string,
    a: AccountRebuild,
    side: 'debit' | 'credit',
    t: TransferRow,
    amount: Int,
    key: string,
    find: (table: string, column: string, key: string, expected: unknown, found: unknown, message: string) => void,
  ): void {
    const version = side === 'debit' ? t.debit_version : t.credit_version;
    const balanceAfter = side === 'debit' ? t.debit_balance_after : t.credit_balance_after;
    const heldAfter = side === 'debit' ? t.debit_held_after : t.credit_held_after;
    const userScoped = this.#userScoped(a.id, version);
    const dBalance = effectOnBalance(side, t.kind, amount);
    const dHeld = effectOnHeld(side, t.kind, amount);
    // A partial replay meets accounts mid-history: their state before this transfer is what
    // the transfer itself records, less its own effect.
    if (!a.complete && eq(a.version, 0) && version !== null) {
      a.version = sub(toInt(version), 1);
      a.balance = sub(toInt(balanceAfter ?? '0'), dBalance);
      a.held = sub(toInt(heldAfter ?? '0'), dHeld);
    }
    const debit = side === 'debit';
    switch (t.kind) {
      case 'POSTED':
        if (debit) a.debitsPosted = add(a.debitsPosted, amount);
        else a.creditsPosted = add(a.creditsPosted, amount);
        break;
      case 'PENDING':
        if (debit) a.debitsPending = add(a.debitsPending, amount);
        else a.creditsPending = add(a.creditsPending, amount);
        break;
      case 'POST_PENDING':
        if (debit) {
          a.debitsPending = sub(a.debitsPending, amount);
          a.debitsPosted = add(a.debitsPosted, amount);
        } else {
          a.creditsPending = sub(a.creditsPending, amount);
          a.creditsPosted = add(a.creditsPosted, amount);
        }
        break;
      case 'VOID_PENDING':
        if (debit) a.debitsPending = sub(a.debitsPending, amount);
        else a.creditsPending = sub(a.creditsPending, amount);
        break;
    }
    a.balance = add(a.balance, dBalance);
    a.held = add(a.held, dHeld);
    a.version = add(a.version, 1);
    a.lastSeq = seq;
    if (userScoped) {
      if (version === null || !eq(toInt(version), a.version)) {
        find('transfers', `${side}_version`, key, a.version, version,
          `account ${a.id}'s version must grow by one per transfer (a missing or extra transfer on it?)`);
        if (version !== null) a.version = toInt(version);
      }
      if (balanceAfter === null || !eq(toInt(balanceAfter), a.balance)) {
        const before = sub(a.balance, dBalance);
        const implied = balanceAfter === null ? null : sub(toInt(balanceAfter), before);
        const direction = effectOnBalance(side, t.kind, 1);
        if (implied !== null && direction !== 0 && !eq(implied, 0) && implied > 0 === direction > 0) {
          // The recorded balances before and after agree with each other on another amount:
          // the amount is what changed.
          const moved = implied < 0 ? sub(0, implied) : implied;
          find('transfers', 'amount', key, moved, t.amount,
            `account ${a.id}'s recorded balance went from ${before} to ${balanceAfter}, so this transfer moved ${moved}`);
        } else {
          find('transfers', `${side}_balance_after`, key, a.balance, balanceAfter,
            `account ${a.id}'s balance after this transfer does not follow from the transfers before it and this amount (${t.amount})`);
        }
        if (balanceAfter !== null) a.balance = toInt(balanceAfter);
      }
      if (heldAfter === null || !eq(toInt(heldAfter), a.held)) {
        find('transfers', `${side}_held_after`, key, a.held, heldAfter,
          `account ${a.id}'s held credits after this transfer do not follow from the transfers before it`);
        if (heldAfter !== null) a.held = toInt(heldAfter);
      }
      // Invariant 3: no user-scoped account is overdrawn, holds included.
      if (a.complete && add(a.debitsPosted, a.debitsPending) > a.creditsPosted) {
        this.report({
          seq, table: 'transfers', column: 'amount', key,
          expected: `≤ ${add(sub(sub(a.creditsPosted, a.debitsPosted), a.debitsPending), amount)}`,
          found: t.amount, message: `invariant 3: account ${a.id} is overdrawn by this transfer`,
        });
      }
    } else if (version !== null || balanceAfter !== null || heldAfter !== null) {
      find('transfers', `${side}_version`, key, 'null', version, `account ${a.id} is a platform account: no balances are recorded on its side`);
    }
  }

  #applyHold(
    row: JournalRow,
    pendingHere: string[],
    find: (table: string, column: string, key: string, expected: unknown, found: unknown, message: string) => void,
  ): void {
    const result = (row.result ?? {}) as Record<string, unknown>;
    if (row.kind === 'RESERVE') {
      if (row.hold_id === null) {
        find('entries', 'hold_id', `entry ${row.seq}`, 'a hold id', 'null', 'a reservation opens a hold');
        return;
      }
      let credits = 0n;
      for (const t of row.transfers) if (t.kind === 'PENDING') credits += big(t.amount);
      this.holdsSeen++;
      this.openHolds.set(row.hold_id, {
        id: row.hold_id,
        user_id: row.user_id ?? '',
        reserve_seq: row.seq,
        credits,
        expires_at: String(result.expires_at ?? ''),
        status: 'OPEN',
        closed_seq: null,
        captured_credits: null,
        legs: pendingHere,
      });
      return;
    }
    if (row.hold_id === null || row.kind === 'REVERSE') return;
    const hold = this.openHolds.get(row.hold_id);
    if (!hold) {
      if (!this.partial && (row.kind === 'EXTEND_HOLD' || row.kind in closing)) {
        find('entries', 'hold_id', `entry ${row.seq}`, 'an open hold', row.hold_id, `a ${row.kind} acts on a hold that is not open`);
      }
      return;
    }
    if (row.kind === 'EXTEND_HOLD') {
      hold.expires_at = String(result.expires_at ?? hold.expires_at);
      return;
    }
    const status = closing[row.kind];
    if (!status) return;
    hold.status = status;
    hold.closed_seq = row.seq;
    if (status === 'CAPTURED') {
      hold.captured_credits = result.captured_credits === undefined ? null : big(String(result.captured_credits));
    }
    // Closing a hold resolves every one of its legs.
    const open = hold.legs.filter((leg) => this.#pending.has(leg));
    if (open.length > 0) {
      find('transfers', 'pending_seq', `entry ${row.seq}`, `legs ${hold.legs.join(', ')} resolved`, `${open.join(', ')} still pending`,
        `closing hold ${hold.id} must post or void all it reserved`);
      // Reported here, at the entry that should have resolved them; not again as orphans.
      for (const leg of open) this.#pending.delete(leg);
    }
    this.openHolds.delete(hold.id);
    this.#onHoldClosed(hold);
  }

  /** Pending transfers left unresolved (they must belong to the open holds). */
  get pendingLegs(): ReadonlyMap<string, PendingLeg> {
    return this.#pending;
  }
}

function effectOnBalance(side: 'debit' | 'credit', kind: string, amount: Int): Int {
  if (kind !== 'POSTED' && kind !== 'POST_PENDING') return 0;
  return side === 'debit' ? sub(0, amount) : amount;
}

function effectOnHeld(side: 'debit' | 'credit', kind: string, amount: Int): Int {
  if (side !== 'debit') return 0;
  if (kind === 'PENDING') return amount;
  if (kind === 'POST_PENDING' || kind === 'VOID_PENDING') return sub(0, amount);
  return 0;
}

export function big(v: string | number | bigint): bigint {
  return typeof v === 'bigint' ? v : BigInt(v);
}

export function show(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'string') return v;
  if (typeof v === 'bigint' || typeof v === 'number' || typeof v === 'boolean') return String(v);
  return JSON.stringify(v);
}
