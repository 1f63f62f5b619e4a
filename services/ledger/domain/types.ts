/** The ledger's domain types. Credits and money are bigint everywhere. */

export type Bucket = 'SUBSCRIPTION' | 'BONUS' | 'PURCHASED';
export const buckets: readonly Bucket[] = ['SUBSCRIPTION', 'BONUS', 'PURCHASED'];

export type EntryKind =
  | 'GRANT'
  | 'PURCHASE'
  | 'RESERVE'
  | 'EXTEND_HOLD'
  | 'CAPTURE'
  | 'RELEASE'
  | 'HOLD_TIMEOUT'
  | 'CONSUME'
  | 'RENEW_SUBSCRIPTION'
  | 'EXPIRE'
  | 'REFUND'
  | 'REVERSE';

export type TransferKind = 'POSTED' | 'PENDING' | 'POST_PENDING' | 'VOID_PENDING';
export type AccountKind = 'PLATFORM' | 'LOT' | 'DEFERRED';
export type HoldStatus = 'OPEN' | 'CAPTURED' | 'RELEASED' | 'EXPIRED';

/** "CREDIT", or an ISO 4217 currency whose amounts are micros. */
export type Unit = string;
export const creditUnit = 'CREDIT';

export type Metadata = Record<string, string>;

/** Account flag: debits (posted + pending) must never exceed posted credits. */
export const flagNoOverdraft = 1;

export interface Allocation {
  lotId: bigint;
  credits: bigint;
}

export interface UpstreamCost {
  amountMicros: bigint;
  currency: string;
  requestId: string;
  model: string;
}

interface CommandBase {
  idempotencyKey: string;
}

export interface GrantCommand extends CommandBase {
  kind: 'GRANT';
  userId: string;
  credits: bigint;
  bucket: Bucket;
  effectiveAt: Date | null;
  expiresAt: Date | null;
  priority: number;
  metadata: Metadata;
}

export interface PurchaseCommand extends CommandBase {
  kind: 'PURCHASE';
  userId: string;
  credits: bigint;
  bucket: Bucket;
  amountMicros: bigint;
  currency: string;
  externalRef: string;
  expiresAt: Date | null;
  priority: number;
  metadata: Metadata;
}

export interface ReserveCommand extends CommandBase {
  kind: 'RESERVE';
  userId: string;
  credits: bigint;
  /** 0 means the server's default TTL. */
  ttlMs: number;
  metadata: Metadata;
}

export interface ExtendHoldCommand extends CommandBase {
  kind: 'EXTEND_HOLD';
  holdId: string;
  ttlMs: number;
}

export interface CaptureCommand extends CommandBase {
  kind: 'CAPTURE';
  holdId: string;
  credits: bigint;
  upstream: UpstreamCost | null;
  metadata: Metadata;
}

export interface ReleaseCommand extends CommandBase {
  kind: 'RELEASE';
  holdId: string;
  metadata: Metadata;
}

/** Issued by the ledger's sweeper, never by a client. */
export interface HoldTimeoutCommand extends CommandBase {
  kind: 'HOLD_TIMEOUT';
  holdId: string;
}

export interface ConsumeCommand extends CommandBase {
  kind: 'CONSUME';
  userId: string;
  credits: bigint;
  upstream: UpstreamCost | null;
  metadata: Metadata;
}

export interface RenewSubscriptionCommand extends CommandBase {
  kind: 'RENEW_SUBSCRIPTION';
  userId: string;
  plan: string;
  periodStart: Date;
  periodEnd: Date;
  credits: bigint;
  /** Zero for a free plan: the lot then has no deferred revenue. */
  amountMicros: bigint;
  currency: string | null;
  /** The invoice id (`in_…`); required when amountMicros > 0. */
  externalRef: string | null;
  metadata: Metadata;
}

/** Issued by the ledger's expiry sweeper for a lot past its expiry. */
export interface ExpireCommand extends CommandBase {
  kind: 'EXPIRE';
  lotId: bigint;
}

export type RefundReason = 'REFUND' | 'DISPUTE';

/**
 * A refund gives either its own amount or, for refunds only, the cumulative total to reach.
 * Exactly one of the two is present; an absent one is left out of the object altogether, so
 * an incremental refund hashes as it did before targets existed.
 */
export interface RefundCommand extends CommandBase {
  kind: 'REFUND';
  externalRef: string;
  /** This refund's amount. */
  amountMicros?: bigint;
  /** The total that refunds (reason REFUND, disputes apart) should reach; the ledger refunds the rest. */
  refundedMicrosTarget?: bigint;
  reason: RefundReason;
  metadata: Metadata;
}

export interface ReverseCommand extends CommandBase {
  kind: 'REVERSE';
  entrySeq: bigint;
  reason: string;
  /**
   * Set by ReinstateDispute: the entry must be a DISPUTE refund, and the lot's refund and
   * dispute bookkeeping is undone with it. Absent for an admin Reverse (which refuses refunds).
   */
  disputeWon?: true;
}

export type Command =
  | RenewSubscriptionCommand
  | ExpireCommand
  | RefundCommand
  | ReverseCommand
  | GrantCommand
  | PurchaseCommand
  | ReserveCommand
  | ExtendHoldCommand
  | CaptureCommand
  | ReleaseCommand
  | HoldTimeoutCommand
  | ConsumeCommand;

/** What every write answers. Fields beyond entryId depend on the command. */
export interface WriteResult {
  entryId: bigint;
  replayed: boolean;
  lotId?: bigint;
  holdId?: string;
  expiresAt?: Date;
  allocation?: Allocation[];
  capturedCredits?: bigint;
  releasedCredits?: bigint;
  /** Credits expired by this entry (renewal, expiry, a release after the lot expired). */
  expiredCredits?: bigint;
  clawedBackCredits?: bigint;
  /** Credits a refund should have clawed back but that were already spent. */
  shortfallCredits?: bigint;
  /** Money refunded against the purchase so far, this refund included. */
  refundedMicrosTotal?: bigint;
  /** Credits a won dispute gave back to the lot. */
  reinstatedCredits?: bigint;
}

export interface TransferRecord {
  idx: number;
  kind: TransferKind;
  debitAccountId: bigint;
  creditAccountId: bigint;
  amount: bigint;
  unit: Unit;
  pendingSeq: bigint | null;
  pendingIdx: number | null;
  debitVersion: bigint | null;
  debitBalanceAfter: bigint | null;
  debitHeldAfter: bigint | null;
  creditVersion: bigint | null;
  creditBalanceAfter: bigint | null;
  creditHeldAfter: bigint | null;
}

export interface EntryRecord {
  seq: bigint;
  kind: EntryKind;
  userId: string | null;
  holdId: string | null;
  idempotencyKey: string;
  requestHash: Buffer;
  actor: string;
  recordedAt: Date;
  effectiveAt: Date;
  policyVersion: string | null;
  allocation: Allocation[] | null;
  metadata: Metadata;
  result: WriteResult;
  /** The jsonb columns as canonical JSON text: hashed and written as they are. */
  json: { allocation: string | null; metadata: string; result: string; lots: string | null };
  reversesSeq: bigint | null;
  prevHash: Buffer;
  hash: Buffer;
  transfers: TransferRecord[];
}
