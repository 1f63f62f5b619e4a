/**
 * The messages between the bench's parent process and its client processes (over the IPC
 * channel of child_process.fork). Everything here is plain JSON: bigints travel as strings.
 */

/** What a client process drives. */
export type Target =
  | { kind: 'ledger'; address: string; token: string }
  /** A no-op server of noop-server.ts (bare or stack), called exactly like the ledger's Consume. */
  | { kind: 'noop'; address: string; token: string }
  /** PostgreSQL directly, one transaction per command (baseline.ts). */
  | { kind: 'baseline'; databaseUrl: string };

export type Workload =
  | 'consume_uniform'
  | 'consume_poisoned'
  | 'consume_hot_user'
  | 'reserve_capture'
  | 'get_balance'
  | 'consume_spent_lots'
  | 'get_balance_spent_lots'
  | 'get_balance_as_of'
  | 'list_entries'
  | 'noop'
  | 'baseline';

export interface Population {
  /** Users u00000 … u(count-1), each granted `credits` by the seed step. */
  count: number;
  hotUser: string;
}

export interface RunRequest {
  type: 'run';
  id: number;
  target: Target;
  workload: Workload;
  population: Population;
  /** Calls kept in flight by this process (a closed loop: a new call starts when one ends). */
  inFlight: number;
  /** Epoch ms at which the warm-up starts; all client processes share it. */
  startAtMs: number;
  warmupMs: number;
  measureMs: number;
  /** Calls this process may start in the whole run, warm-up included. */
  maxCalls: number;
  /** Per-call deadline, so that a stuck server cannot stall the bench. */
  callTimeoutMs: number;
  /** Makes idempotency keys unique across bench runs and client processes. */
  keyPrefix: string;
}

export interface SeedRequest {
  type: 'seed';
  id: number;
  target: Extract<Target, { kind: 'ledger' }>;
  /** User indexes [from, to) of the population to grant to. */
  from: number;
  to: number;
  /** Also grant the hot user (one client process does). */
  withHotUser: boolean;
  hotUser: string;
  /** Credits per grant, as decimal strings (bigint over JSON). */
  credits: string;
  hotUserCredits: string;
  inFlight: number;
  callTimeoutMs: number;
  keyPrefix: string;
  /** Epoch ms after which seeding gives up. */
  deadlineMs: number;
}

export interface ShutdownRequest {
  type: 'shutdown';
}

export type ParentMessage = RunRequest | SeedRequest | ShutdownRequest;

export interface RunResult {
  type: 'run-result';
  id: number;
  /** Operations completed (successfully) inside the measure window. */
  ops: number;
  /** Latency histogram of those operations (LatencyHistogram.toJSON()). */
  histogram: number[];
  /**
   * For operations made of several calls (reserve_capture), the latency of each call that
   * completed inside the window; null when an operation is one call.
   */
  callHistogram: number[] | null;
  /** Failed calls over the whole run, by gRPC status name or error code. */
  errors: Record<string, number>;
  firstError: string | null;
  /** Milliseconds of the measure window this process actually covered. */
  measuredMs: number;
  /** True when maxCalls ran out before the measure window ended. */
  callLimitHit: boolean;
}

export interface SeedResult {
  type: 'seed-result';
  id: number;
  granted: number;
  errors: Record<string, number>;
  firstError: string | null;
}

export interface FailureMessage {
  type: 'failure';
  id: number;
  message: string;
}

export interface HelloMessage {
  type: 'hello';
}

export type ChildMessage = RunResult | SeedResult | FailureMessage | HelloMessage;
