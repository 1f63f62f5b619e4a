import { status, type ServiceError } from '@grpc/grpc-js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as pb from '../generated/proto/credits/ledger/v1/ledger.js';
import { ManualClock } from '../lib/clock.js';
import { startTestLedger, type TestLedger } from './testing/ledger-harness.js';
import { errorReason } from './client/index.js';

/**
 * Model-based property test of the ledger through its real gRPC surface.
 *
 * fast-check generates runs of steps: groups of commands (Grant, Purchase, Reserve, ExtendHold,
 * partial Capture, Release, Consume, the same command sent twice at once, replays, key
 * conflicts, a paid external_ref purchased again) sent concurrently so that the write queue
 * forms batches; clock moves on a ManualClock (random, or exactly onto a hold expiry or lot
 * boundary, ±1 ms); passes of the hold sweeper and of the expiry sweeper. Every answer is
 * compared with an independent in-memory model written below (the model uses nothing from the
 * ledger's code): the outcome of every command, the allocations it chose, and after each step
 * the GetBalance of the users it touched (totals, per bucket, per lot with its deferred
 * revenue). Each run ends with both sweepers, a comparison of every user and of the platform
 * accounts (issued, consumed, held, expired, paid, recognised, breakage, deferred, upstream
 * cost), and the invariants.
 *
 * The model follows ledger README §3: drawdown order; revenue recognised in proportion to what is
 * still deferred, rounded down, so a lot's last credit takes what is left; a lot that expires
 * while held stays capturable for that hold, and what the hold gives back after the lot's
 * expiry (release, timeout, or the uncaptured part of a capture) is expired at once. Within one
 * capture the spent part leaves its lot before the expired part.
 *
 * Commands of one group are sent together and may be applied in any order, so a group holds at
 * most one state-changing command per user: their outcomes do not depend on one another.
 * Replays and key conflicts change nothing, so they may join any group.
 *
 * Reproduce a failure with LEDGER_MODEL_SEED=<seed> (and LEDGER_MODEL_PATH=<path>) from the report;
 * LEDGER_MODEL_RUNS (default 25) and LEDGER_MODEL_TIME_LIMIT_S (default 120) search longer.
 */

// ---------------------------------------------------------------------------------------------
// The model

type BucketName = 'SUBSCRIPTION' | 'BONUS' | 'PURCHASED';
type HoldStatus = 'OPEN' | 'CAPTURED' | 'RELEASED' | 'EXPIRED';
type Outcome =
  | 'OK'
  | 'INSUFFICIENT_CREDITS'
  | 'HOLD_EXPIRED'
  | 'HOLD_CLOSED'
  | 'CAPTURE_EXCEEDS_HOLD'
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS';

const bucketsInOrder: BucketName[] = ['SUBSCRIPTION', 'BONUS', 'PURCHASED'];
const pbBucket: Record<BucketName, pb.Bucket> = {
  SUBSCRIPTION: pb.Bucket.BUCKET_SUBSCRIPTION,
  BONUS: pb.Bucket.BUCKET_BONUS,
  PURCHASED: pb.Bucket.BUCKET_PURCHASED,
};

interface MLot {
  lotId: bigint;
  user: string;
  /** Creation order within the run: the model's notion of "older". */
  born: number;
  bucket: BucketName;
  effectiveAt: number;
  expiresAt: number | null;
  priority: number;
  /** Posted credits left in the lot, held ones included. */
  balance: bigint;
  held: bigint;
  /** Money paid for the lot and not yet recognised. */
  deferred: bigint;
  currency: string | null;
  /** The expiry sweeper has dealt with the lot. */
  swept: boolean;
}

interface MLeg {
  lot: MLot;
  amount: bigint;
}

interface MHold {
  id: string;
  user: string;
  credits: bigint;
  expiresAt: number;
  status: HoldStatus;
  legs: MLeg[];
}

const add = (m: Map<string, bigint>, k: string, v: bigint) => m.set(k, (m.get(k) ?? 0n) + v);

class Model {
  now: number;
  readonly users = new Set<string>();
  readonly lots = new Map<string, MLot[]>();
  readonly holds: MHold[] = [];
  #born = 0;
  // Totals the platform accounts must show.
  issued = 0n;
  consumedPosted = 0n;
  expiredCredits = 0n;
  readonly paid = new Map<string, bigint>();
  readonly recognized = new Map<string, bigint>();
  readonly breakage = new Map<string, bigint>();
  readonly upstream = new Map<string, bigint>();

  constructor(now: number) {
    this.now = now;
  }

  live(lot: MLot): boolean {
    return lot.effectiveAt <= this.now && (lot.expiresAt === null || lot.expiresAt > this.now);
  }

  available(lot: MLot): bigint {
    return this.live(lot) ? lot.balance - lot.held : 0n;
  }

  /**
   * ledger README §3, written independently of the ledger: soonest expiry (never last), then
   * SUBSCRIPTION, BONUS, PURCHASED, then lower priority number, then the older lot.
   */
  static drawKey(lot: MLot): number[] {
    return [
      lot.expiresAt ?? Number.MAX_SAFE_INTEGER,
      bucketsInOrder.indexOf(lot.bucket),
      lot.priority,
      lot.born,
    ];
  }

  static inDrawOrder(lots: readonly MLot[]): MLot[] {
    return [...lots].sort((a, b) => {
      const ka = Model.drawKey(a);
      const kb = Model.drawKey(b);
      for (let i = 0; i < ka.length; i += 1) if (ka[i] !== kb[i]) return ka[i]! - kb[i]!;
      return 0;
    });
  }

  /** What a debit would draw, lot by lot, or why it is refused. */
  plan(user: string, credits: bigint): MLeg[] | 'NOT_FOUND' | 'INSUFFICIENT_CREDITS' {
    if (!this.users.has(user)) return 'NOT_FOUND';
    const legs: MLeg[] = [];
    let left = credits;
    for (const lot of Model.inDrawOrder(this.lots.get(user) ?? [])) {
      if (left === 0n) break;
      const free = this.available(lot);
      if (free <= 0n) continue;
      const take = free < left ? free : left;
      legs.push({ lot, amount: take });
      left -= take;
    }
    return left === 0n ? legs : 'INSUFFICIENT_CREDITS';
  }

  addLot(lot: Omit<MLot, 'born' | 'held' | 'deferred' | 'swept'> & { paid: bigint }): void {
    const { paid, ...rest } = lot;
    const m: MLot = { ...rest, born: this.#born++, held: 0n, deferred: paid, swept: false };
    this.users.add(m.user);
    const list = this.lots.get(m.user) ?? [];
    list.push(m);
    this.lots.set(m.user, list);
    this.issued += m.balance;
    if (m.currency !== null) add(this.paid, m.currency, paid);
  }

  /**
   * Credits leave a lot for good (spent or expired): they take their share of the lot's
   * remaining deferred money, rounded down, so the last credit takes what is left.
   */
  #leave(lot: MLot, credits: bigint, to: Map<string, bigint>): void {
    if (lot.currency !== null) {
      const share = (lot.deferred * credits) / lot.balance;
      lot.deferred -= share;
      add(to, lot.currency, share);
    }
    lot.balance -= credits;
  }

  /** Spent credits: their deferred money is recognised. */
  spend(lot: MLot, credits: bigint): void {
    this.#leave(lot, credits, this.recognized);
    this.consumedPosted += credits;
  }

  expired(lot: MLot): boolean {
    return lot.expiresAt !== null && lot.expiresAt <= this.now;
  }

  /**
   * Held credits a hold gives back to its lot. ledger README §3: a lot that expired while held
   * stays capturable for that hold, and what the hold releases after the lot's expiry is
   * expired at once (credits to platform.credits_expired, their deferred money to breakage).
   */
  giveBack(lot: MLot, credits: bigint): void {
    lot.held -= credits;
    if (credits > 0n && this.expired(lot)) {
      this.#leave(lot, credits, this.breakage);
      this.expiredCredits += credits;
    }
  }

  /** May a command act on this hold? Release may void a lapsed hold the sweeper has not reached. */
  holdCheck(hold: MHold, acceptLapsed: boolean): Outcome {
    if (hold.status === 'EXPIRED') return 'HOLD_EXPIRED';
    if (hold.status !== 'OPEN') return 'HOLD_CLOSED';
    if (!acceptLapsed && hold.expiresAt <= this.now) return 'HOLD_EXPIRED';
    return 'OK';
  }

  voidHold(hold: MHold, status: HoldStatus): void {
    for (const leg of hold.legs) this.giveBack(leg.lot, leg.amount);
    hold.status = status;
  }

  /**
   * The expiry sweeper (ledger README §3, Expire): each lot past its expiry that it has not dealt
   * with yet loses its unheld remainder (deferred money to breakage); held credits stay for
   * their hold. Returns what the sweeper reports: lots examined, expired, and finished without
   * an entry (nothing unheld).
   */
  expireLots(): { examined: number; expired: number; finished: number } {
    const counts = { examined: 0, expired: 0, finished: 0 };
    for (const lot of [...this.lots.values()].flat()) {
      if (lot.swept || !this.expired(lot)) continue;
      counts.examined += 1;
      lot.swept = true;
      const unheld = lot.balance - lot.held;
      if (unheld > 0n) {
        this.#leave(lot, unheld, this.breakage);
        this.expiredCredits += unheld;
        counts.expired += 1;
      } else {
        counts.finished += 1;
      }
    }
    return counts;
  }

  lapsedHolds(): MHold[] {
    return this.holds.filter((h) => h.status === 'OPEN' && h.expiresAt <= this.now);
  }

  held(): bigint {
    return this.holds.filter((h) => h.status === 'OPEN').reduce((s, h) => s + h.credits, 0n);
  }
}

// ---------------------------------------------------------------------------------------------
// What fast-check generates

type Gen =
  | {
      t: 'grant';
      u: number;
      credits: bigint;
      bucket: BucketName;
      effectiveIn: number | null;
      expiresIn: number | null;
      priority: number;
      dup: boolean;
    }
  | {
      t: 'purchase';
      u: number;
      credits: bigint;
      bucket: 'PURCHASED' | 'BONUS';
      micros: bigint;
      currency: 'USD' | 'EUR';
      expiresIn: number | null;
      priority: number;
      dup: boolean;
    }
  | { t: 'reserve'; u: number; credits: bigint; ttl: number; dup: boolean }
  | { t: 'consume'; u: number; credits: bigint; upstream: bigint | null; dup: boolean }
  | { t: 'extend'; h: HoldPick; ttl: number; dup: boolean }
  | { t: 'capture'; h: HoldPick; pct: number; exceed: boolean; upstream: bigint | null; dup: boolean }
  | { t: 'release'; h: HoldPick; dup: boolean }
  | { t: 'unknownHold'; op: 'extend' | 'capture' | 'release'; id: string }
  | { t: 'replay'; w: number; conflict: boolean }
  /** Several commands for one user sent at once (see Run.burst). */
  | { t: 'burst'; u: number; items: BurstItem[] };

type BurstItem =
  | { t: 'consume' | 'reserve'; credits: bigint }
  | { t: 'capture' | 'extend' | 'release'; n: number; pct: number };

/**
 * Which hold a command acts on: the open hold that expires first (the one a clock move to a hold
 * expiry lands on), any open hold, or any hold at all (closed ones too).
 */
type HoldPick = { from: 'soonest' | 'open' | 'any'; n: number };

type Step =
  | { t: 'group'; cmds: Gen[] }
  | { t: 'advance'; ms: number }
  /** Moves the clock to just before, at or just after a future hold expiry or lot boundary. */
  | { t: 'advanceTo'; which: 'hold' | 'lot'; k: number; offset: -1 | 0 | 1; thenSweep: boolean }
  /** One pass of the hold sweeper (lapsed holds) or of the expiry sweeper (expired lots). */
  | { t: 'sweep' }
  | { t: 'expirySweep' };

// Taken modulo the run's user count; half the time one of the first five, so that the users
// who were given credits are also the ones who spend them.
const userArb = fc.oneof(fc.nat({ max: 4 }), fc.nat({ max: 19 }));
const dupArb = fc.oneof({ weight: 9, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) });
// Lots often expire soon, so that holds outlive their lots (ledger README §3, holds and expiry).
const expiresArb = fc.oneof(
  fc.constant(null),
  fc.integer({ min: 1_000, max: 20_000 }),
  fc.integer({ min: 1_000, max: 180_000 }),
);
const upstreamArb = fc.oneof(fc.constant(null), fc.bigInt(0n, 500_000n));
const priorityArb = fc.integer({ min: -2, max: 2 });
const holdPickArb: fc.Arbitrary<HoldPick> = fc.record({
  from: fc.constantFrom<HoldPick['from']>('soonest', 'open', 'open', 'any'),
  n: fc.nat(),
});

const genArb: fc.Arbitrary<Gen> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      t: fc.constant('grant' as const),
      u: userArb,
      credits: fc.bigInt(1n, 60n),
      bucket: fc.constantFrom<BucketName>('SUBSCRIPTION', 'BONUS', 'PURCHASED'),
      effectiveIn: fc.oneof({ weight: 4, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 30_000 }) }),
      expiresIn: expiresArb,
      priority: priorityArb,
      dup: dupArb,
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      t: fc.constant('purchase' as const),
      u: userArb,
      credits: fc.bigInt(1n, 600n),
      bucket: fc.constantFrom<'PURCHASED' | 'BONUS'>('PURCHASED', 'BONUS'),
      micros: fc.bigInt(1n, 500_000_000n),
      currency: fc.constantFrom<'USD' | 'EUR'>('USD', 'EUR'),
      expiresIn: expiresArb,
      priority: priorityArb,
      dup: dupArb,
    }),
  },
  {
    weight: 5,
    arbitrary: fc.record({
      t: fc.constant('reserve' as const),
      u: userArb,
      credits: fc.bigInt(1n, 80n),
      ttl: fc.oneof(fc.constant(0), fc.integer({ min: 1_000, max: 30_000 }), fc.integer({ min: 30_000, max: 300_000 })),
      dup: dupArb,
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      t: fc.constant('consume' as const),
      u: userArb,
      credits: fc.bigInt(1n, 80n),
      upstream: upstreamArb,
      dup: dupArb,
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      t: fc.constant('extend' as const),
      h: holdPickArb,
      ttl: fc.integer({ min: 1_000, max: 30_000 }),
      dup: dupArb,
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      t: fc.constant('capture' as const),
      h: holdPickArb,
      pct: fc.integer({ min: 1, max: 100 }),
      exceed: fc.oneof({ weight: 9, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
      upstream: upstreamArb,
      dup: dupArb,
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ t: fc.constant('release' as const), h: holdPickArb, dup: dupArb }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant('unknownHold' as const),
      op: fc.constantFrom<'extend' | 'capture' | 'release'>('extend', 'capture', 'release'),
      id: fc.uuid({ version: 4 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('replay' as const), w: fc.nat(), conflict: fc.boolean() }) },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant('burst' as const),
      u: userArb,
      items: fc.array(
        fc.oneof(
          { weight: 3, arbitrary: fc.record({ t: fc.constantFrom<'consume' | 'reserve'>('consume', 'reserve'), credits: fc.bigInt(1n, 15n) }) },
          {
            weight: 2,
            arbitrary: fc.record({
              t: fc.constantFrom<'capture' | 'extend' | 'release'>('capture', 'capture', 'extend', 'release'),
              n: fc.nat(),
              pct: fc.integer({ min: 1, max: 100 }),
            }),
          },
        ),
        { minLength: 2, maxLength: 8 },
      ),
    }),
  },
);

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record({ t: fc.constant('group' as const), cmds: fc.array(genArb, { minLength: 1, maxLength: 8, size: 'max' }) }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      t: fc.constant('advance' as const),
      ms: fc.oneof(fc.integer({ min: 0, max: 5_000 }), fc.integer({ min: 5_000, max: 70_000 })),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      t: fc.constant('advanceTo' as const),
      which: fc.constantFrom<'hold' | 'lot'>('hold', 'lot'),
      k: fc.oneof(fc.constant(0), fc.nat()),
      offset: fc.constantFrom<-1 | 0 | 1>(-1, 0, 1),
      thenSweep: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ t: 'sweep' as const }) },
  { weight: 1, arbitrary: fc.constant({ t: 'expirySweep' as const }) },
);

/** Grants and purchases first, so that most users have credits to spend. */
const fundingArb: fc.Arbitrary<Step[]> = fc.array(
  fc.record({
    t: fc.constant('group' as const),
    cmds: fc.array(
      genArb.filter((g) => g.t === 'grant' || g.t === 'purchase'),
      { minLength: 1, maxLength: 8 },
    ),
  }),
  { minLength: 1, maxLength: 3 },
);

const runArb = fc.record({
  users: fc.integer({ min: 5, max: 20 }),
  steps: fc
    .tuple(fundingArb, fc.array(stepArb, { minLength: 10, maxLength: 40, size: 'max' }))
    .map(([funding, rest]) => [...funding, ...rest]),
});

// ---------------------------------------------------------------------------------------------
// Talking to the ledger

type Method = 'grant' | 'purchase' | 'reserve' | 'consume' | 'extendHold' | 'capture' | 'release';

interface Sent {
  method: Method;
  request: Record<string, unknown>;
  response: Record<string, unknown>;
}

async function attempt(p: Promise<unknown>): Promise<{ outcome: string; response?: Record<string, unknown> }> {
  try {
    return { outcome: 'OK', response: (await p) as Record<string, unknown> };
  } catch (e) {
    const error = e as ServiceError;
    if (error.code === status.FAILED_PRECONDITION) return { outcome: errorReason(error) ?? `FAILED_PRECONDITION without reason: ${error.details}` };
    if (error.code === status.NOT_FOUND) return { outcome: 'NOT_FOUND' };
    if (error.code === status.ALREADY_EXISTS) return { outcome: 'ALREADY_EXISTS' };
    return { outcome: `${status[error.code] ?? error.code}: ${error.details ?? String(e)}` };
  }
}

function call(t: TestLedger, method: Method, request: Record<string, unknown>): Promise<unknown> {
  const c = t.client;
  switch (method) {
    case 'grant':
      return c.admin.grant(request);
    case 'purchase':
      return c.payments.purchase(request);
    case 'reserve':
      return c.worker.reserve(request);
    case 'consume':
      return c.worker.consume(request);
    case 'extendHold':
      return c.worker.extendHold(request);
    case 'capture':
      return c.worker.capture(request);
    case 'release':
      return c.worker.release(request);
  }
}

/** What the model says about a command, judged against the model as it is when the command applies. */
interface Judgement {
  expected: Outcome;
  /** Checks an OK answer against the model (before `apply`). */
  check?: (response: Record<string, unknown>) => void;
  /** Applies an OK answer to the model. */
  apply?: (response: Record<string, unknown>) => void;
}

/** A concrete command: the request, and how to judge its answer. */
interface Action {
  label: string;
  /** The user whose state the command may change; null for commands that change nothing. */
  user: string | null;
  method: Method;
  request: Record<string, unknown>;
  dup: boolean;
  judge: () => Judgement;
  /** Replays compare with the original answer. */
  replayOf?: Sent;
}

const legsToPb = (legs: readonly MLeg[]) => legs.map((l) => ({ lotId: l.lot.lotId, credits: l.amount }));

class Run {
  readonly model: Model;
  readonly history: Sent[] = [];
  #key = 0;

  constructor(
    readonly t: TestLedger,
    readonly clock: ManualClock,
    readonly userIds: string[],
  ) {
    this.model = new Model(clock.now().getTime());
  }

  key(prefix: string): string {
    this.#key += 1;
    return `${prefix}-${this.#key}`;
  }

  pickHold(pick: HoldPick): MHold | null {
    const all = this.model.holds;
    const open = all.filter((x) => x.status === 'OPEN');
    if (pick.from === 'soonest' && open.length > 0) {
      return open.reduce((a, b) => (b.expiresAt < a.expiresAt ? b : a));
    }
    const from = pick.from !== 'any' && open.length > 0 ? open : all;
    return from.length === 0 ? null : from[pick.n % from.length]!;
  }

  /**
   * Turns a generated command into a concrete request. What the model expects of it is judged
   * later, against the model as it is when the ledger applies the command.
   */
  resolve(g: Gen, where: string): Action | null {
    const m = this.model;
    const now = m.now;
    switch (g.t) {
      case 'grant': {
        const user = this.userIds[g.u % this.userIds.length]!;
        const effectiveAt = g.effectiveIn === null ? now : now + g.effectiveIn;
        const expiresAt = g.expiresIn === null ? null : effectiveAt + g.expiresIn;
        const request = {
          idempotencyKey: this.key('g'),
          userId: user,
          credits: g.credits,
          bucket: pbBucket[g.bucket],
          effectiveAt: g.effectiveIn === null ? undefined : new Date(effectiveAt),
          expiresAt: expiresAt === null ? undefined : new Date(expiresAt),
          priority: g.priority,
        };
        return {
          label: `${where} Grant ${g.credits} ${g.bucket} to ${user}`,
          user,
          method: 'grant',
          request,
          dup: g.dup,
          judge: () => ({
            expected: 'OK',
            check: (r) => expect(r.lotId).toBeGreaterThan(0n),
            apply: (r) =>
              m.addLot({
                lotId: r.lotId as bigint,
                user,
                bucket: g.bucket,
                effectiveAt,
                expiresAt,
                priority: g.priority,
                balance: g.credits,
                currency: null,
                paid: 0n,
              }),
          }),
        };
      }
      case 'purchase': {
        const user = this.userIds[g.u % this.userIds.length]!;
        const key = this.key('p');
        const expiresAt = g.expiresIn === null ? null : now + g.expiresIn;
        const request = {
          idempotencyKey: key,
          userId: user,
          credits: g.credits,
          bucket: pbBucket[g.bucket],
          amountMicros: g.micros,
          currency: g.currency,
          externalRef: `cs_${key}`,
          expiresAt: expiresAt === null ? undefined : new Date(expiresAt),
          priority: g.priority,
        };
        return {
          label: `${where} Purchase ${g.credits} ${g.bucket} for ${g.micros} ${g.currency} by ${user}`,
          user,
          method: 'purchase',
          request,
          dup: g.dup,
          judge: () => ({
            expected: 'OK',
            check: (r) => expect(r.lotId).toBeGreaterThan(0n),
            apply: (r) =>
              m.addLot({
                lotId: r.lotId as bigint,
                user,
                bucket: g.bucket,
                effectiveAt: now,
                expiresAt,
                priority: g.priority,
                balance: g.credits,
                currency: g.currency,
                paid: g.micros,
              }),
          }),
        };
      }
      case 'reserve': {
        const user = this.userIds[g.u % this.userIds.length]!;
        const expiresAt = now + (g.ttl === 0 ? this.t.options.holdTtlMsDefault : g.ttl);
        return {
          label: `${where} Reserve ${g.credits} for ${user} ttl ${g.ttl}`,
          user,
          method: 'reserve',
          request: { idempotencyKey: this.key('r'), userId: user, credits: g.credits, ttlMs: BigInt(g.ttl) },
          dup: g.dup,
          judge: () => {
            const plan = m.plan(user, g.credits);
            if (typeof plan === 'string') return { expected: plan };
            return {
              expected: 'OK',
              check: (r) => {
                expect(r.allocations).toEqual(legsToPb(plan));
                expect((r.expiresAt as Date).getTime()).toBe(expiresAt);
                expect(r.holdId).toMatch(/^[0-9a-f-]{36}$/);
              },
              apply: (r) => {
                for (const leg of plan) leg.lot.held += leg.amount;
                m.holds.push({ id: r.holdId as string, user, credits: g.credits, expiresAt, status: 'OPEN', legs: plan });
              },
            };
          },
        };
      }
      case 'consume': {
        const user = this.userIds[g.u % this.userIds.length]!;
        const currency = g.credits % 2n === 0n ? 'USD' : 'EUR';
        return {
          label: `${where} Consume ${g.credits} for ${user}`,
          user,
          method: 'consume',
          request: {
            idempotencyKey: this.key('c'),
            userId: user,
            credits: g.credits,
            upstream: g.upstream === null ? undefined : { amountMicros: g.upstream, currency, requestId: 'pred', model: 'm' },
          },
          dup: g.dup,
          judge: () => {
            const plan = m.plan(user, g.credits);
            if (typeof plan === 'string') return { expected: plan };
            return {
              expected: 'OK',
              check: (r) => expect(r.allocations).toEqual(legsToPb(plan)),
              apply: () => {
                for (const leg of plan) m.spend(leg.lot, leg.amount);
                if (g.upstream !== null) add(m.upstream, currency, g.upstream);
              },
            };
          },
        };
      }
      case 'extend': {
        const hold = this.pickHold(g.h);
        return hold && this.extendAction(hold, g.ttl, g.dup, where);
      }
      case 'capture': {
        const hold = this.pickHold(g.h);
        return hold && this.captureAction(hold, g.pct, g.exceed, g.upstream, g.dup, where);
      }
      case 'release': {
        const hold = this.pickHold(g.h);
        return hold && this.releaseAction(hold, g.dup, where);
      }
      case 'unknownHold': {
        const method = g.op === 'extend' ? 'extendHold' : g.op;
        const request: Record<string, unknown> = { idempotencyKey: this.key('x'), holdId: g.id };
        if (g.op === 'extend') request.ttlMs = 5_000n;
        if (g.op === 'capture') request.credits = 1n;
        return {
          label: `${where} ${method} of unknown hold ${g.id}`,
          user: null,
          method,
          request,
          dup: false,
          judge: () => ({ expected: 'NOT_FOUND' }),
        };
      }
      case 'replay': {
        if (this.history.length === 0) return null;
        const original = this.history[g.w % this.history.length]!;
        if (!g.conflict) {
          return {
            label: `${where} replay of ${original.method} ${String(original.request.idempotencyKey)}`,
            user: null,
            method: original.method,
            request: original.request,
            dup: false,
            judge: () => ({ expected: 'OK' }),
            replayOf: original,
          };
        }
        if (original.method === 'purchase' && g.w % 2 === 0) {
          // The same payment again under a new key: external_ref is unique across purchases.
          return {
            label: `${where} purchase of external_ref ${String(original.request.externalRef)} again under a new key`,
            user: null,
            method: 'purchase',
            request: { ...original.request, idempotencyKey: this.key('p-again') },
            dup: false,
            judge: () => ({ expected: 'ALREADY_EXISTS' }),
          };
        }
        const request =
          original.method === 'extendHold'
            ? { ...original.request, ttlMs: (original.request.ttlMs as bigint) + 1_000n }
            : { ...original.request, metadata: { conflict: 'yes' } };
        return {
          label: `${where} reuse of key ${String(original.request.idempotencyKey)} for another ${original.method}`,
          user: null,
          method: original.method,
          request,
          dup: false,
          judge: () => ({ expected: 'ALREADY_EXISTS' }),
        };
      }
      case 'burst':
        // Expanded by burst().
        return null;
    }
  }

  extendAction(hold: MHold, ttl: number, dup: boolean, where: string): Action {
    const m = this.model;
    const expiresAt = m.now + ttl;
    return {
      label: `${where} ExtendHold ${hold.id} (${hold.status}, expires ${hold.expiresAt - m.now} ms from now) by ${ttl}`,
      user: hold.user,
      method: 'extendHold',
      request: { idempotencyKey: this.key('e'), holdId: hold.id, ttlMs: BigInt(ttl) },
      dup,
      judge: () => ({
        expected: m.holdCheck(hold, false),
        check: (r) => expect((r.expiresAt as Date).getTime()).toBe(expiresAt),
        apply: () => {
          hold.expiresAt = expiresAt;
        },
      }),
    };
  }

  captureAction(hold: MHold, pct: number, exceed: boolean, upstream: bigint | null, dup: boolean, where: string): Action {
    const m = this.model;
    const partial = (hold.credits * BigInt(pct)) / 100n;
    const credits = exceed ? hold.credits + 1n : partial > 0n ? partial : 1n;
    return {
      label: `${where} Capture ${credits} of ${hold.id} (${hold.status}, ${hold.credits} held, expires ${hold.expiresAt - m.now} ms from now)`,
      user: hold.user,
      method: 'capture',
      request: {
        idempotencyKey: this.key('cap'),
        holdId: hold.id,
        credits,
        upstream: upstream === null ? undefined : { amountMicros: upstream, currency: 'USD', requestId: 'pred', model: 'm' },
      },
      dup,
      judge: () => {
        let expected = m.holdCheck(hold, false);
        if (expected === 'OK' && credits > hold.credits) expected = 'CAPTURE_EXCEEDS_HOLD';
        // Spent in the order the hold drew its lots.
        const spent: MLeg[] = [];
        let left = credits;
        for (const leg of hold.legs) {
          const take = leg.amount < left ? leg.amount : left;
          if (take > 0n) spent.push({ lot: leg.lot, amount: take });
          left -= take;
        }
        return {
          expected,
          check: (r) => {
            expect(r.capturedCredits).toBe(credits);
            expect(r.releasedCredits).toBe(hold.credits - credits);
            expect(r.allocations).toEqual(legsToPb(spent));
          },
          apply: () => {
            // The pending legs are posted (spent part) or voided (the rest): spending comes
            // first, then the rest returns to its lot, expiring there if the lot expired.
            for (const leg of hold.legs) leg.lot.held -= leg.amount;
            for (const leg of spent) m.spend(leg.lot, leg.amount);
            for (const leg of hold.legs) {
              const taken = spent.find((x) => x.lot === leg.lot)?.amount ?? 0n;
              leg.lot.held += leg.amount - taken;
              m.giveBack(leg.lot, leg.amount - taken);
            }
            hold.status = 'CAPTURED';
            if (upstream !== null) add(m.upstream, 'USD', upstream);
          },
        };
      },
    };
  }

  releaseAction(hold: MHold, dup: boolean, where: string): Action {
    const m = this.model;
    return {
      label: `${where} Release ${hold.id} (${hold.status}, expires ${hold.expiresAt - m.now} ms from now)`,
      user: hold.user,
      method: 'release',
      request: { idempotencyKey: this.key('rel'), holdId: hold.id },
      dup,
      judge: () => ({
        expected: m.holdCheck(hold, true),
        check: (r) => expect(r.releasedCredits).toBe(hold.credits),
        apply: () => m.voidHold(hold, 'RELEASED'),
      }),
    };
  }

  /** Judges one command's answers (one, or two when it was sent twice at once) and applies it. */
  settle(a: Action, got: readonly { outcome: string; response?: Record<string, unknown> }[]): void {
    const j = a.judge();
    for (const answer of got) expect(answer.outcome, a.label).toBe(j.expected);
    if (j.expected !== 'OK') return;
    const responses = got.map((x) => x.response!);
    if (a.replayOf) {
      expect(responses[0], a.label).toEqual({ ...a.replayOf.response, replayed: true });
      return;
    }
    // Sent twice at once: both succeed with one entry, exactly one of them not a replay.
    expect(responses.filter((r) => r.replayed === false).length, `${a.label}: answers not replayed`).toBe(1);
    const first = responses.find((r) => r.replayed === false)!;
    for (const r of responses) expect(r, `${a.label}: duplicate answer`).toEqual({ ...first, replayed: r.replayed });
    try {
      j.check?.(first);
    } catch (error) {
      throw new Error(`${a.label}: ${(error as Error).message}`);
    }
    j.apply?.(first);
    this.history.push({ method: a.method, request: a.request, response: first });
  }

  send(a: Action): Promise<{ outcome: string; response?: Record<string, unknown> }[]> {
    return Promise.all((a.dup ? [0, 1] : [0]).map(() => attempt(call(this.t, a.method, a.request))));
  }

  /** Commands for different users, at once: any order of application gives the same outcomes. */
  async group(cmds: readonly Gen[], where: string): Promise<Set<string>> {
    const bursts = cmds.filter((g): g is Extract<Gen, { t: 'burst' }> => g.t === 'burst');
    if (bursts.length > 0) return this.burst(bursts[0]!, where);
    const actions: Action[] = [];
    const busy = new Set<string>();
    cmds.forEach((g, i) => {
      const action = this.resolve(g, `${where}.${i}`);
      if (!action) return;
      if (action.user !== null) {
        // One state-changing command per user per group: their order does not matter then.
        if (busy.has(action.user)) return;
        busy.add(action.user);
      }
      actions.push(action);
    });
    const answers = await Promise.all(actions.map((a) => this.send(a)));
    actions.forEach((a, i) => this.settle(a, answers[i]!));
    return busy;
  }

  /**
   * Several commands for one user at once, all bound to succeed whatever their order: debits
   * within what the user has available now, and captures, extensions and releases of distinct
   * open holds. The ledger applies them in some order, which their entry ids reveal; the model
   * then judges each in that order (allocations and revenue shares depend on it).
   */
  async burst(g: Extract<Gen, { t: 'burst' }>, where: string): Promise<Set<string>> {
    const m = this.model;
    const user = this.userIds[g.u % this.userIds.length]!;
    if (!m.users.has(user)) return new Set();
    let budget = (m.lots.get(user) ?? []).reduce((s, l) => s + m.available(l), 0n);
    const used = new Set<MHold>();
    const actions: Action[] = [];
    g.items.forEach((item, i) => {
      const at = `${where}.burst.${i}`;
      if (item.t === 'consume' || item.t === 'reserve') {
        if (item.credits > budget) return;
        budget -= item.credits;
        const action =
          item.t === 'consume'
            ? this.resolve({ t: 'consume', u: g.u, credits: item.credits, upstream: null, dup: false }, at)
            : this.resolve({ t: 'reserve', u: g.u, credits: item.credits, ttl: 0, dup: false }, at);
        actions.push(action!);
        return;
      }
      const op = item as Extract<BurstItem, { n: number }>;
      // Open holds of the user; capture and extend need one that has not lapsed.
      const holds = m.holds.filter(
        (h) => h.user === user && h.status === 'OPEN' && !used.has(h) && (op.t === 'release' || h.expiresAt > m.now),
      );
      if (holds.length === 0) return;
      const hold = holds[op.n % holds.length]!;
      used.add(hold);
      if (op.t === 'capture') actions.push(this.captureAction(hold, op.pct, false, null, false, at));
      else if (op.t === 'extend') actions.push(this.extendAction(hold, 5_000, false, at));
      else actions.push(this.releaseAction(hold, false, at));
    });
    const answers = await Promise.all(actions.map((a) => this.send(a)));
    for (const [i, a] of actions.entries()) {
      expect(answers[i]![0]!.outcome, `${a.label} (in a burst, bound to succeed)`).toBe('OK');
    }
    const order = actions
      .map((a, i) => ({ a, got: answers[i]!, seq: answers[i]![0]!.response!.entryId as bigint }))
      .sort((x, y) => (x.seq < y.seq ? -1 : 1));
    expect(new Set(order.map((o) => o.seq)).size, `${where} burst: one entry per command`).toBe(order.length);
    for (const o of order) this.settle(o.a, o.got);
    return new Set([user]);
  }

  async sweep(where: string): Promise<void> {
    const lapsed = this.model.lapsedHolds();
    const voided = await this.t.ledger.sweeper.sweepOnce();
    expect(voided, `${where} sweep: holds voided`).toBe(lapsed.length);
    for (const hold of lapsed) this.model.voidHold(hold, 'EXPIRED');
  }

  async expirySweep(where: string): Promise<void> {
    const expected = this.model.expireLots();
    const got = await this.t.ledger.expirySweeper.sweepOnce();
    expect(got, `${where} expiry sweep`).toEqual(expected);
  }

  advance(ms: number): void {
    this.clock.advance(ms);
    this.model.now += ms;
  }

  advanceTo(which: 'hold' | 'lot', k: number, offset: number): void {
    const m = this.model;
    const times =
      which === 'hold'
        ? m.holds.filter((h) => h.status === 'OPEN').map((h) => h.expiresAt)
        : [...m.lots.values()].flat().flatMap((l) => (l.expiresAt === null ? [l.effectiveAt] : [l.effectiveAt, l.expiresAt]));
    const future = [...new Set(times.filter((x) => x + offset > m.now))].sort((a, b) => a - b);
    if (future.length === 0) return;
    this.advance(future[k % future.length]! + offset - m.now);
  }

  async compareBalance(user: string, where: string): Promise<void> {
    const m = this.model;
    const got = await attempt(this.t.client.auditor.getBalance({ userId: user }));
    if (!m.users.has(user)) {
      expect(got.outcome, `${where} GetBalance ${user}`).toBe('NOT_FOUND');
      return;
    }
    expect(got.outcome, `${where} GetBalance ${user}`).toBe('OK');
    const r = got.response as unknown as pb.GetBalanceResponse;
    const lots = Model.inDrawOrder((m.lots.get(user) ?? []).filter((l) => l.balance > 0n));
    const buckets = bucketsInOrder.map((b) => {
      const of = lots.filter((l) => l.bucket === b);
      return {
        bucket: pbBucket[b],
        balance: of.reduce((s, l) => s + l.balance, 0n),
        held: of.reduce((s, l) => s + l.held, 0n),
        available: of.reduce((s, l) => s + m.available(l), 0n),
      };
    });
    const expected = {
      userId: user,
      balance: buckets.reduce((s, b) => s + b.balance, 0n),
      held: buckets.reduce((s, b) => s + b.held, 0n),
      available: buckets.reduce((s, b) => s + b.available, 0n),
      buckets,
      lots: lots.map((l) => ({
        lotId: l.lotId,
        bucket: pbBucket[l.bucket],
        balance: l.balance,
        held: l.held,
        available: m.available(l),
        deferredMicros: l.deferred,
        expiresAt: l.expiresAt === null ? undefined : new Date(l.expiresAt),
        effectiveAt: new Date(l.effectiveAt),
        priority: l.priority,
      })),
    };
    const actual = {
      userId: r.userId,
      balance: r.balance,
      held: r.held,
      available: r.available,
      buckets: r.buckets.map((b) => ({ bucket: b.bucket, balance: b.balance, held: b.held, available: b.available })),
      lots: r.lots.map((l) => ({
        lotId: l.lotId,
        bucket: l.bucket,
        balance: l.balance,
        held: l.held,
        available: l.available,
        deferredMicros: l.deferredMicros,
        expiresAt: l.expiresAt,
        effectiveAt: l.effectiveAt,
        priority: l.priority,
      })),
    };
    expect(actual, `${where} GetBalance ${user} at +${m.now - start.getTime()} ms`).toEqual(expected);
  }

  /** The platform accounts agree with the model's totals. */
  async comparePlatform(): Promise<void> {
    const m = this.model;
    const { rows } = await this.t.pool.query<{ code: string; dp: string; cp: string; dpe: string; cpe: string }>(
      `SELECT code, debits_posted::text AS dp, credits_posted::text AS cp,
              debits_pending::text AS dpe, credits_pending::text AS cpe
         FROM accounts WHERE kind = 'PLATFORM'`,
    );
    const acc = new Map(rows.map((r) => [r.code, r]));
    const num = (code: string, f: 'dp' | 'cp' | 'dpe' | 'cpe') => BigInt(acc.get(code)?.[f] ?? '0');
    expect(num('platform.credits_issued', 'dp'), 'credits issued').toBe(m.issued);
    expect(num('platform.credits_consumed', 'cp'), 'credits consumed').toBe(m.consumedPosted);
    expect(num('platform.credits_consumed', 'cpe'), 'credits held').toBe(m.held());
    expect(num('platform.credits_expired', 'cp'), 'credits expired').toBe(m.expiredCredits);
    const deferred = await this.t.pool.query<{ unit: string; deferred: string }>(
      `SELECT unit, SUM(credits_posted - debits_posted)::text AS deferred FROM accounts WHERE kind = 'DEFERRED' GROUP BY unit`,
    );
    const deferredBy = new Map(deferred.rows.map((r) => [r.unit, BigInt(r.deferred)]));
    for (const currency of ['USD', 'EUR']) {
      const modelDeferred = [...m.lots.values()].flat().filter((l) => l.currency === currency).reduce((s, l) => s + l.deferred, 0n);
      expect(num(`stripe.clearing.${currency}`, 'dp'), `paid ${currency}`).toBe(m.paid.get(currency) ?? 0n);
      expect(num(`revenue.recognized.${currency}`, 'cp'), `recognized ${currency}`).toBe(m.recognized.get(currency) ?? 0n);
      expect(deferredBy.get(currency) ?? 0n, `deferred ${currency}`).toBe(modelDeferred);
      expect(num(`revenue.breakage.${currency}`, 'cp'), `breakage ${currency}`).toBe(m.breakage.get(currency) ?? 0n);
      expect(
        modelDeferred + (m.recognized.get(currency) ?? 0n) + (m.breakage.get(currency) ?? 0n),
        `paid = deferred + recognized + breakage ${currency}`,
      ).toBe(
        m.paid.get(currency) ?? 0n,
      );
      expect(num(`upstream.wavespeed.cost.${currency}`, 'dp'), `upstream ${currency}`).toBe(m.upstream.get(currency) ?? 0n);
    }
  }
}

const start = new Date('2026-11-24T12:00:00.000Z');

/** Like Promise.all, but lets every call finish before failing, so none is cut off by close(). */
async function settleAll(promises: Promise<unknown>[]): Promise<void> {
  const results = await Promise.allSettled(promises);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

async function execute(run: { users: number; steps: Step[] }, after?: (r: Run) => Promise<void>): Promise<void> {
  const clock = new ManualClock(start);
  const t = await startTestLedger({ clock });
  try {
    const userIds = Array.from({ length: run.users }, (_, i) => `user-${i}`);
    const r = new Run(t, clock, userIds);
    for (const [i, step] of run.steps.entries()) {
      const where = `step ${i}`;
      if (step.t === 'advance') {
        r.advance(step.ms);
        continue;
      }
      if (step.t === 'advanceTo') {
        r.advanceTo(step.which, step.k, step.offset);
        if (step.thenSweep) {
          await r.sweep(where);
          await r.expirySweep(where);
        }
        continue;
      }
      if (step.t === 'sweep') {
        await r.sweep(where);
        continue;
      }
      if (step.t === 'expirySweep') {
        await r.expirySweep(where);
        continue;
      }
      const touched = await r.group(step.cmds, where);
      await settleAll([...touched].map((u) => r.compareBalance(u, where)));
    }
    // The end of a run: lapsed holds are swept (invariant 7), expired lots too, then everything
    // is compared.
    await r.sweep('final');
    await r.expirySweep('final');
    await settleAll(userIds.map((u) => r.compareBalance(u, 'final')));
    await r.comparePlatform();
    await after?.(r);
    await t.expectInvariants();
  } finally {
    await t.close();
  }
}

describe('ledger against an in-memory model (property-based, through gRPC)', () => {
  it('every outcome, allocation and balance matches the model; invariants hold', async () => {
    const seed = process.env.LEDGER_MODEL_SEED === undefined ? undefined : Number(process.env.LEDGER_MODEL_SEED);
    const path = process.env.LEDGER_MODEL_PATH;
    await fc.assert(
      fc.asyncProperty(runArb, (run) => execute(run)),
      {
        numRuns: Number(process.env.LEDGER_MODEL_RUNS ?? 25),
        ...(seed === undefined ? {} : { seed }),
        ...(path === undefined ? {} : { path }),
        // A shrinking run opens a database each time: stop shrinking after a while and report
        // the smallest counterexample found so far.
        interruptAfterTimeLimit: Number(process.env.LEDGER_MODEL_TIME_LIMIT_S ?? 120) * 1_000,
      },
    );
  }, Number(process.env.LEDGER_MODEL_TIME_LIMIT_S ?? 120) * 1_000 + 60_000);

  it('a hand-written scenario: drawdown across buckets, expiry while held, sweeps, replays', async () => {
    // Deterministic, so that the basics are checked even if the generator changes.
    const steps: Step[] = [
      {
        t: 'group',
        cmds: [
          { t: 'grant', u: 0, credits: 10n, bucket: 'PURCHASED', effectiveIn: null, expiresIn: null, priority: 0, dup: false },
          { t: 'grant', u: 1, credits: 5n, bucket: 'BONUS', effectiveIn: null, expiresIn: 10_000, priority: 0, dup: true },
          // A paid lot that will expire while held, then be partly captured.
          { t: 'purchase', u: 5, credits: 10n, bucket: 'PURCHASED', micros: 1_000_003n, currency: 'USD', expiresIn: 5_000, priority: 0, dup: false },
        ],
      },
      {
        t: 'group',
        cmds: [
          { t: 'grant', u: 0, credits: 4n, bucket: 'SUBSCRIPTION', effectiveIn: null, expiresIn: 10_000, priority: 0, dup: false },
          { t: 'purchase', u: 1, credits: 500n, bucket: 'PURCHASED', micros: 299_990_000n, currency: 'USD', expiresIn: null, priority: 0, dup: false },
        ],
      },
      {
        t: 'group',
        cmds: [
          { t: 'grant', u: 0, credits: 3n, bucket: 'BONUS', effectiveIn: null, expiresIn: 10_000, priority: 1, dup: false },
          { t: 'grant', u: 2, credits: 7n, bucket: 'BONUS', effectiveIn: 20_000, expiresIn: null, priority: 0, dup: false },
        ],
      },
      {
        t: 'group',
        cmds: [
          // user-0: SUBSCRIPTION 4 (expiring), BONUS 3 (same expiry), then PURCHASED.
          { t: 'reserve', u: 0, credits: 9n, ttl: 30_000, dup: false },
          { t: 'consume', u: 1, credits: 7n, upstream: 1_000n, dup: true },
          { t: 'consume', u: 2, credits: 1n, upstream: null, dup: false },
          { t: 'reserve', u: 5, credits: 10n, ttl: 60_000, dup: false },
        ],
      },
      { t: 'advance', ms: 10_000 },
      // The SUBSCRIPTION and BONUS lots of user-0 expired while held: the hold still captures.
      // user-5's paid lot expired while held: 3 are captured (recognised), 7 expire (breakage) in the same entry.
      {
        t: 'group',
        cmds: [
          { t: 'capture', h: { from: 'open', n: 0 }, pct: 50, exceed: false, upstream: 2_000n, dup: false },
          { t: 'capture', h: { from: 'open', n: 1 }, pct: 30, exceed: false, upstream: null, dup: false },
        ],
      },
      { t: 'group', cmds: [{ t: 'reserve', u: 1, credits: 498n, ttl: 1_000, dup: false }, { t: 'replay', w: 0, conflict: false }] },
      { t: 'advance', ms: 20_000 },
      { t: 'group', cmds: [{ t: 'capture', h: { from: 'any', n: 1 }, pct: 100, exceed: false, upstream: null, dup: false }] },
      { t: 'sweep' },
      {
        t: 'group',
        cmds: [
          { t: 'release', h: { from: 'any', n: 1 }, dup: false },
          { t: 'consume', u: 2, credits: 7n, upstream: null, dup: false },
          { t: 'replay', w: 3, conflict: true },
        ],
      },
      // +30 s. user-1 spends the rest of the paid lot; user-3 gets a lot expiring at +35 s.
      {
        t: 'group',
        cmds: [
          { t: 'consume', u: 1, credits: 498n, upstream: null, dup: false },
          { t: 'grant', u: 3, credits: 5n, bucket: 'SUBSCRIPTION', effectiveIn: null, expiresIn: 5_000, priority: 0, dup: false },
          { t: 'grant', u: 4, credits: 6n, bucket: 'PURCHASED', effectiveIn: null, expiresIn: null, priority: 0, dup: false },
        ],
      },
      { t: 'group', cmds: [{ t: 'reserve', u: 4, credits: 6n, ttl: 2_000, dup: false }] },
      // Exactly at the hold's expiry (+32 s): it can no longer be captured or extended, and the sweeper voids it.
      { t: 'advance', ms: 2_000 },
      { t: 'group', cmds: [{ t: 'capture', h: { from: 'soonest', n: 0 }, pct: 100, exceed: false, upstream: null, dup: false }] },
      { t: 'group', cmds: [{ t: 'extend', h: { from: 'soonest', n: 0 }, ttl: 5_000, dup: false }] },
      { t: 'sweep' },
      // Exactly at user-3's lot expiry (+35 s): nothing left to spend there.
      { t: 'advance', ms: 3_000 },
      {
        t: 'group',
        cmds: [
          { t: 'consume', u: 3, credits: 1n, upstream: null, dup: false },
          { t: 'reserve', u: 4, credits: 6n, ttl: 0, dup: false },
        ],
      },
    ];
    await execute({ users: 6, steps }, async (r) => {
      // Literal expectations, so that the model itself is checked too.
      const outcomes = r.history.map((h) => h.method).join(' ');
      expect(outcomes).toContain('capture');
      const balance = async (user: string) => r.t.client.auditor.getBalance({ userId: user });
      const b0 = await balance('user-0');
      // 4 SUBSCRIPTION captured; the 3 BONUS released after that lot's expiry were expired;
      // the 2 PURCHASED went back: 10 left.
      expect([b0.balance, b0.held, b0.available]).toEqual([10n, 0n, 10n]);
      expect(b0.buckets.map((b) => b.balance)).toEqual([0n, 0n, 10n]);
      const b1 = await balance('user-1');
      expect([b1.balance, b1.held, b1.available, b1.lots.length]).toEqual([0n, 0n, 0n, 0]);
      const b2 = await balance('user-2');
      expect([b2.balance, b2.available]).toEqual([0n, 0n]);
      // user-3's lot expired with 5 credits unspent; the final expiry sweep took them.
      const b3 = await balance('user-3');
      expect([b3.balance, b3.held, b3.available]).toEqual([0n, 0n, 0n]);
      const b4 = await balance('user-4');
      expect([b4.balance, b4.held, b4.available]).toEqual([6n, 6n, 0n]);
      const b5 = await balance('user-5');
      expect([b5.balance, b5.held, b5.available]).toEqual([0n, 0n, 0n]);
      const { rows } = await r.t.pool.query<{ code: string; cp: string }>(
        `SELECT code, credits_posted::text AS cp FROM accounts
          WHERE code IN ('platform.credits_expired', 'revenue.recognized.USD', 'platform.credits_consumed',
                         'revenue.breakage.USD')
             OR (kind = 'DEFERRED' AND user_id = 'user-5')`,
      );
      const cp = Object.fromEntries(rows.map((x) => [x.code, BigInt(x.cp)]));
      // 3 released after expiry (user-0) + 5 swept (user-3) + 7 captured-off after expiry (user-5).
      expect(cp['platform.credits_expired']).toBe(15n);
      // user-1's $299.99 lot was fully spent: all of it is recognised, to the micro; user-5's
      // 1 000 003 micros for 10 credits: 3 credits recognise ⌊3 000 009 / 10⌋ = 300 000, and the
      // 7 that expired take the 700 003 left, as breakage.
      expect(cp['revenue.recognized.USD']).toBe(299_990_000n + 300_000n);
      expect(cp['revenue.breakage.USD']).toBe(700_003n);
      // 4 (user-0) + 7 (user-1, once despite the duplicate) + 498 + 7 (user-2) + 3 (user-5) = 519.
      expect(cp['platform.credits_consumed']).toBe(519n);
      const deferred5 = await r.t.pool.query<{ left: string }>(
        `SELECT (credits_posted - debits_posted)::text AS left FROM accounts WHERE kind = 'DEFERRED' AND user_id = 'user-5'`,
      );
      expect(deferred5.rows.map((x) => BigInt(x.left))).toEqual([0n]);
    });
  });
});
