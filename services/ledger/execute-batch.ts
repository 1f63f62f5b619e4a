import { draftEntry, accountIdsNeeded, commandHoldId, commandUserId } from './commands/apply.js';
import { LedgerError } from './domain/errors.js';
import { LedgerState, type HoldPolicy, type PlatformAccounts } from './domain/ledger-state.js';
import type { Command, WriteResult } from './domain/types.js';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import {
  holdsWithLegs,
  loadLots,
  lockHead,
  lockUsers,
  namesNothing,
  nextAccountIds,
  noTargets,
  purchasedRefs,
  resolveTargets,
  reversibleEntries,
  platformTotals,
  storedKeys,
  subscriptionPeriods,
  userAccounts,
} from './store/load-batch.js';
import { ledgerNow } from './domain/ledger-time.js';
import { isRetriable, isUnavailable } from './store/pg-errors.js';
import { sendTogether, type BatchConnection } from './store/batch-connection.js';
import { settleAll } from './store/settle-all.js';
import { writeBatch } from './store/write-batch.js';

export interface BatchItem {
  command: Command;
  requestHash: Buffer;
  actor: string;
  /** Epoch ms after which the caller no longer waits; such a command is not applied. */
  deadlineMs: number;
}

export type Outcome = { ok: true; result: WriteResult } | { ok: false; error: Error };

export interface BatchDeps {
  connection: BatchConnection;
  platform: PlatformAccounts;
  clock: Clock;
  holdPolicy: HoldPolicy;
  log: Logger;
  /** Attempts for a batch that hits serialization failures or deadlocks. */
  attemptsMax?: number;
  /** Why writes must be refused now (this process's clock strayed), or null. */
  writeRefusal?: () => string | null;
}

/**
 * Applies a batch of commands in one transaction (ledger README §5): lock the users in sorted
 * order and the journal head, look up every idempotency key, load the users' live lots and the
 * holds, apply the commands one after another in memory (each succeeds or fails on its own),
 * write everything with multi-row statements, commit, and only then answer.
 *
 * Serialization failures and deadlocks retry the whole batch. Any other failure is not the
 * callers' fault: the batch is split in halves, each run on its own, recursively, so one command
 * PostgreSQL rejects fails alone and costs its neighbours about 2·log2(batch) extra
 * transactions rather than one per command.
 */
export async function executeBatch(deps: BatchDeps, items: readonly BatchItem[]): Promise<Outcome[]> {
  const attemptsMax = deps.attemptsMax ?? 8;
  const refusal = deps.writeRefusal?.() ?? null;
  if (refusal !== null) {
    const error = new LedgerError('UNAVAILABLE', `${refusal}; retry on another instance with the same idempotency key`);
    return items.map(() => ({ ok: false, error }));
  }
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await runOnce(deps, items);
    } catch (error) {
      if (isRetriable(error) && attempt < attemptsMax) {
        deps.log.debug({ attempt, code: (error as { code?: string }).code }, 'batch conflict, retrying');
        await sleep(Math.random() * 5 * attempt);
        continue;
      }
      if (isUnavailable(error) || isRetriable(error)) {
        deps.log.warn({ err: error, size: items.length }, 'batch failed: database unavailable');
        const unavailable = new LedgerError('UNAVAILABLE', 'the ledger database is unavailable; retry with the same idempotency key');
        return items.map(() => ({ ok: false, error: unavailable }));
      }
      if (items.length > 1) {
        deps.log.error({ err: error, size: items.length }, 'batch failed; running each half on its own');
        const half = Math.ceil(items.length / 2);
        return [...(await executeBatch(deps, items.slice(0, half))), ...(await executeBatch(deps, items.slice(half)))];
      }
      deps.log.error({ err: error, kind: items[0]?.command.kind }, 'command failed');
      return [{ ok: false, error: error as Error }];
    }
  }
}

/**
 * One attempt at a batch. The connection pipelines (pg's `pipeline` mode): statements that do
 * not need each other's results are sent together and answered in order, so a batch costs a
 * few round trips instead of one per statement. PostgreSQL still runs them one after another,
 * in the order sent, which keeps the lock order (users, then head) intact.
 *
 * With the connection already held and no holds, lots or entries to resolve (Consume, Grant,
 * Purchase, Reserve), BEGIN and the reads are sent before the first await: the write queue
 * starts a batch before it answers the previous one, and this is what lets PostgreSQL run the
 * reads meanwhile.
 */
async function runOnce(deps: BatchDeps, items: readonly BatchItem[]): Promise<Outcome[]> {
  const acquired = deps.connection.acquire();
  const client = acquired instanceof Promise ? await acquired : acquired;
  let broken = false;
  try {
    const commands = items.map((i) => i.command);
    const pointedAt = {
      holdIds: unique(commands.map(commandHoldId)),
      lotIds: commands.flatMap((c) => (c.kind === 'EXPIRE' ? [c.lotId] : [])),
      externalRefs: unique(commands.map((c) => (c.kind === 'REFUND' ? c.externalRef : null))),
      entrySeqs: commands.flatMap((c) => (c.kind === 'REVERSE' ? [c.entrySeq] : [])),
    };
    // Most batches name nothing to resolve: their BEGIN then goes out with the reads.
    let begun: Promise<unknown> | null = null;
    let targets = noTargets();
    if (!namesNothing(pointedAt)) {
      begun = client.query('BEGIN');
      targets = await resolveTargets(client, pointedAt);
    }
    const userIds = unique([
      ...commands.map(commandUserId),
      ...targets.holdUsers.values(),
      ...targets.lotUsers.values(),
      ...targets.entryUsers.values(),
    ]).sort();
    // Sent together; the lots are read after the user locks are granted, since the server runs
    // the statements in order.
    const [, users, head, platformBefore, keys, live, targetHolds, named, reversible, refs, periods, accountIds] = await sendTogether(client, () =>
      settleAll([
        begun ?? client.query('BEGIN'),
        lockUsers(client, userIds),
        lockHead(client),
        platformTotals(client, [...deps.platform.all.keys()]),
        storedKeys(client, commands.map((c) => c.idempotencyKey)),
        loadLots(client, { live: userIds }),
        holdsWithLegs(client, [...targets.holdUsers.keys()]),
        // Lots named by commands (expiries, refunds), spent or not.
        loadLots(client, { ids: [...targets.lotUsers.keys()] }),
        reversibleEntries(client, [...targets.entryUsers.keys()]),
        purchasedRefs(
          client,
          unique(commands.map((c) => (c.kind === 'PURCHASE' || c.kind === 'RENEW_SUBSCRIPTION' ? c.externalRef : null))),
        ),
        subscriptionPeriods(
          client,
          commands.flatMap((c) => (c.kind === 'RENEW_SUBSCRIPTION' ? [{ userId: c.userId, periodStart: c.periodStart }] : [])),
        ),
        nextAccountIds(
          client,
          commands.reduce((n, c) => n + accountIdsNeeded(c), 0),
        ),
      ] as const),
    );
    // Reversals also need the accounts and lots they give back to, and the hold their
    // reservation opened (an open one may not be reversed); a won dispute also the lot its
    // refund names, whose bookkeeping it undoes even when no credits go back to it.
    const mirroredIds = [
      ...new Set(
        [...reversible.values()].flatMap((e) => [
          ...e.transfers.flatMap((t) => [t.debit, t.credit]),
          ...(e.kind === 'REFUND' && e.metadata.lot_id !== undefined ? [BigInt(e.metadata.lot_id)] : []),
        ]),
      ),
    ];
    const [mirrored, mirroredLots, reversedHolds] = await sendTogether(client, () =>
      settleAll([
        userAccounts(client, mirroredIds),
        loadLots(client, { ids: mirroredIds }),
        holdsWithLegs(client, [...reversible.values()].flatMap((e) => (e.holdId ? [e.holdId] : []))),
      ] as const),
    );
    const state = new LedgerState({
      // Never before the last entry: recorded_at grows with seq across processes.
      now: ledgerNow(deps.clock.now(), head.recordedAt),
      headSeq: head.seq,
      headHash: head.hash,
      users,
      accounts: [...live.accounts, ...named.accounts, ...mirrored, ...mirroredLots.accounts],
      lots: [...live.lots, ...named.lots, ...mirroredLots.lots],
      holds: [...targetHolds, ...reversedHolds],
      keys,
      externalRefs: refs,
      subscriptionPeriods: periods,
      reversible,
      platform: deps.platform,
      platformTotals: platformBefore,
      accountIds,
      holdPolicy: deps.holdPolicy,
    });
    const outcomes = items.map((item) => applyOne(state, item));
    // The writes and COMMIT go out together. PostgreSQL answers a COMMIT of a transaction that
    // failed with ROLLBACK, not an error, so every write's outcome is checked before answering.
    const [, commit] = await sendTogether(client, () => settleAll([writeBatch(client, state, head.seq), client.query('COMMIT')] as const));
    if (commit.command !== 'COMMIT') throw new Error(`batch transaction ended with ${commit.command}`);
    return outcomes;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {
      broken = true;
    });
    throw error;
  } finally {
    // The connection stays held for the next batch unless it broke; the write queue releases
    // it when it runs out of work.
    if (broken) deps.connection.release(true);
  }
}

function applyOne(state: LedgerState, item: BatchItem): Outcome {
  const { command } = item;
  const stored = state.storedKey(command.idempotencyKey);
  if (stored) {
    if (!stored.requestHash.equals(item.requestHash)) {
      return {
        ok: false,
        error: new LedgerError(
          'ALREADY_EXISTS',
          `idempotency_key: "${command.idempotencyKey}" was used by entry ${stored.result.entryId} for a different request`,
        ),
      };
    }
    return { ok: true, result: { ...stored.result, replayed: true } };
  }
  if (item.deadlineMs <= Date.now()) {
    return { ok: false, error: new LedgerError('DEADLINE_EXCEEDED', 'the deadline passed before the command was applied; nothing was written') };
  }
  try {
    const draft = draftEntry(state, command);
    if (draft.kind === 'BOOKKEEPING') return { ok: true, result: state.keep(draft) };
    const entry = state.post({ idempotencyKey: command.idempotencyKey, requestHash: item.requestHash, actor: item.actor }, draft);
    return { ok: true, result: entry.result };
  } catch (error) {
    return { ok: false, error: error as Error };
  }
}

function unique(values: readonly (string | null)[]): string[] {
  return [...new Set(values.filter((v): v is string => v !== null))];
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
