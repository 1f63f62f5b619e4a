import type pg from 'pg';
import type * as pb from '../../generated/proto/credits/ledger/v1/ledger.js';
import type { Clock } from '../../lib/clock.js';
import { parseCapture } from '../commands/capture.js';
import { parseConsume } from '../commands/consume.js';
import { parseExtendHold } from '../commands/extend-hold.js';
import { parseGrant } from '../commands/grant.js';
import { parsePurchase } from '../commands/purchase.js';
import { parseRelease } from '../commands/release.js';
import { parseReserve } from '../commands/reserve.js';
import { requestHash } from '../domain/canonical.js';
import { invalid } from '../domain/errors.js';
import type { Command, WriteResult } from '../domain/types.js';
import * as v from '../domain/validate.js';
import { parseRefund } from '../commands/refund.js';
import { parseRenewSubscription } from '../commands/renew-subscription.js';
import { parseReinstateDispute, parseReverse } from '../commands/reverse.js';
import { readBalance, readQuote } from '../store/read-balance.js';
import type { EntryReader } from '../store/read-entries.js';
import type { WriteQueue } from '../write-queue.js';
import { allocationsToPb, balanceToPb, bucketFromPb, entryKindFromPb, entryToPb, refundReasonFromPb } from './convert.js';
import type { CallContext, Handlers } from './server.js';
import type { StreamSlots } from './stream-slots.js';

export interface LedgerServiceDeps {
  queue: WriteQueue;
  /** Journal reads (GetEntry, ListEntries, StreamJournal), on the readers' pool. */
  reader: EntryReader;
  /** GetBalance and Quote: short index probes, kept off the readers' pool (see pools.ts). */
  pool: pg.Pool;
  /** The cap on StreamJournal calls open at once in this process. */
  streams: StreamSlots;
  clock: Clock;
  validation: v.ValidationContext;
  /** How long StreamJournal waits before looking for new entries when it has caught up. */
  streamPollMs?: number;
}

/** Entries StreamJournal reads per query. */
const streamPageSize = 100;

/**
 * LedgerService as plain async functions: parse (validating every field before anything else
 * happens), hand the command to the write queue, shape the answer. Errors are thrown as
 * LedgerError and mapped to gRPC status in one place (errors.ts).
 */
export function ledgerServiceHandlers(deps: LedgerServiceDeps): Handlers<pb.LedgerServiceServer> {
  const { validation: ctx } = deps;
  const write = (command: Command, call: CallContext): Promise<WriteResult> =>
    deps.queue.submit({ command, requestHash: requestHash(command), actor: call.principal.name, deadlineMs: call.deadlineMs });

  return {
    async grant(req, call) {
      const r = await write(parseGrant({ ...req, bucket: bucketFromPb(req.bucket) }), call);
      return { entryId: r.entryId, lotId: r.lotId ?? 0n, replayed: r.replayed };
    },
    async purchase(req, call) {
      const r = await write(parsePurchase({ ...req, bucket: bucketFromPb(req.bucket) }, ctx), call);
      return { entryId: r.entryId, lotId: r.lotId ?? 0n, replayed: r.replayed };
    },
    async reserve(req, call) {
      const r = await write(parseReserve(req, ctx), call);
      return {
        entryId: r.entryId,
        holdId: r.holdId ?? '',
        expiresAt: r.expiresAt,
        allocations: allocationsToPb(r.allocation),
        replayed: r.replayed,
      };
    },
    async extendHold(req, call) {
      const r = await write(parseExtendHold(req, ctx), call);
      return { entryId: r.entryId, expiresAt: r.expiresAt, replayed: r.replayed };
    },
    async capture(req, call) {
      const r = await write(parseCapture(req, ctx), call);
      return {
        entryId: r.entryId,
        capturedCredits: r.capturedCredits ?? 0n,
        releasedCredits: r.releasedCredits ?? 0n,
        allocations: allocationsToPb(r.allocation),
        replayed: r.replayed,
      };
    },
    async release(req, call) {
      const r = await write(parseRelease(req), call);
      return { entryId: r.entryId, releasedCredits: r.releasedCredits ?? 0n, replayed: r.replayed };
    },
    async consume(req, call) {
      const r = await write(parseConsume(req, ctx), call);
      return { entryId: r.entryId, allocations: allocationsToPb(r.allocation), replayed: r.replayed };
    },
    async renewSubscription(req, call) {
      const r = await write(parseRenewSubscription(req, ctx), call);
      return { entryId: r.entryId, lotId: r.lotId ?? 0n, expiredCredits: r.expiredCredits ?? 0n, replayed: r.replayed };
    },
    async refund(req, call) {
      const r = await write(parseRefund({ ...req, reason: refundReasonFromPb(req.reason) }), call);
      return {
        entryId: r.entryId,
        clawedBackCredits: r.clawedBackCredits ?? 0n,
        shortfallCredits: r.shortfallCredits ?? 0n,
        refundedMicrosTotal: r.refundedMicrosTotal ?? 0n,
        replayed: r.replayed,
      };
    },
    async reinstateDispute(req, call) {
      const r = await write(parseReinstateDispute(req), call);
      return { entryId: r.entryId, reinstatedCredits: r.reinstatedCredits ?? 0n, replayed: r.replayed };
    },
    async reverse(req, call) {
      const r = await write(parseReverse(req), call);
      return { entryId: r.entryId, replayed: r.replayed };
    },
    async quote(req) {
      const q = await readQuote(deps.pool, v.userId(req.userId), v.credits(req.credits), deps.clock.now());
      return { sufficient: q.sufficient, available: q.available, allocations: allocationsToPb(q.allocation), policyVersion: q.policyVersion };
    },
    async getBalance(req) {
      const asOf = v.optionalTime(req.asOf, 'as_of');
      return balanceToPb(await readBalance(deps.pool, v.userId(req.userId), deps.clock.now(), asOf));
    },
    async streamJournal(req, _call, sink) {
      if (req.fromEntryId < 0n) throw invalid('from_entry_id', 'must not be negative');
      // The slot is held until the loop ends: the client cancelled (or the server drains),
      // which aborts the signal and wakes both the poll's sleep and a write waiting for a
      // slow client, or a read failed.
      await deps.streams.run(async () => {
        let next = req.fromEntryId > 0n ? req.fromEntryId : 1n;
        const pollMs = deps.streamPollMs ?? 200;
        while (!sink.signal.aborted) {
          const page = await deps.reader.from(next, streamPageSize);
          for (const entry of page) {
            if (sink.signal.aborted) return;
            await sink.write({ entry: entryToPb(entry) });
            next = entry.seq + 1n;
          }
          if (page.length < streamPageSize) await sleep(pollMs, sink.signal);
        }
      });
    },
    async getEntry(req) {
      return { entry: entryToPb(await deps.reader.get(req.entryId)) };
    },
    async listEntries(req) {
      const filter = {
        userId: req.userId === '' ? null : v.userId(req.userId),
        kind: entryKindFromPb(req.kind),
        recordedFrom: v.optionalTime(req.recordedFrom, 'recorded_from'),
        recordedBefore: v.optionalTime(req.recordedBefore, 'recorded_before'),
      };
      const page = await deps.reader.list(filter, req.pageSize, req.pageToken);
      return { entries: page.entries.map(entryToPb), nextPageToken: page.nextPageToken };
    },
  };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done);
  });
}
