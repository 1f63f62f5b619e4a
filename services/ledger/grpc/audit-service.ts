import type pg from 'pg';
import type * as pb from '../../generated/proto/credits/ledger/v1/audit.js';
import type { Clock } from '../../lib/clock.js';
import type { Finding } from '../audit/journal-row.js';
import { paymentsInboxExists, stripeInboxItems, stripeJournalItems } from '../audit/reconcile-stripe.js';
import { wavespeedBillingItems, wavespeedJournalItems } from '../audit/reconcile-wavespeed.js';
import { reconcile, type ReconResult } from '../audit/reconcile.js';
import { trialBalance } from '../audit/trial-balance.js';
import { verifyJournal } from '../audit/verify-journal.js';
import { invalid, LedgerError } from '../domain/errors.js';
import { boundedRead } from '../store/bounded-read.js';
import type { Handlers } from './server.js';

export interface AuditServiceDeps {
  /**
   * The ledger's readers' pool: verification holds one connection for its snapshot, and a
   * statement past the pool's statement timeout is DEADLINE_EXCEEDED (store/bounded-read.ts).
   */
  pool: pg.Pool;
  clock: Clock;
  /** Wavespeed's billing listing, when the ledger is configured with a key. */
  wavespeed: { baseUrl: string; apiKey: string } | null;
  /** Verifications allowed at once in this process (each walks the whole journal). */
  verificationsMax?: number;
}

/** Findings sent in full in a report; the count says how many there were. */
const findingsMax = 100;

function findingToPb(f: Finding): pb.Finding {
  return {
    entryId: f.seq === null ? 0n : BigInt(f.seq), table: f.table, column: f.column, key: f.key, expected: f.expected, found: f.found, message: f.message,
  };
}

function reconciliationToPb(r: ReconResult): pb.Reconciliation {
  return {
    matched: BigInt(r.matched),
    journalItems: BigInt(r.journalItems),
    externalItems: BigInt(r.externalItems),
    exceptions: r.exceptions.map((e) => ({
      kind: e.kind, key: e.key, currency: e.currency,
      ...(e.journalMicros === null ? {} : { journalMicros: e.journalMicros }),
      ...(e.externalMicros === null ? {} : { externalMicros: e.externalMicros }),
      journalSources: e.journalSources, externalSources: e.externalSources, message: e.message,
    })),
  };
}

function period(from: Date | undefined, to: Date | undefined): { from: Date | null; to: Date | null } {
  if (from && to && to.getTime() <= from.getTime()) throw invalid('to', 'must be after from');
  return { from: from ?? null, to: to ?? null };
}

/**
 * AuditService (proto/credits/ledger/v1/audit.proto): the audit engine of services/ledger/audit,
 * served to internal callers with the auditor or admin role. Verification is bounded to
 * `verificationsMax` at once per process (it holds a read connection and a core while it walks
 * the journal) and stops when the caller cancels or the server drains.
 */
export function auditServiceHandlers(deps: AuditServiceDeps): Handlers<pb.AuditServiceServer> {
  let running = 0;
  const verificationsMax = deps.verificationsMax ?? 1;
  const read = <T>(run: () => Promise<T>) => boundedRead(deps.pool, run);
  return {
    async verifyJournal(req, _call, sink) {
      if (req.fromEntryId < 0n) throw invalid('from_entry_id', 'must not be negative');
      if (req.toEntryId < 0n) throw invalid('to_entry_id', 'must not be negative');
      if (req.toEntryId !== 0n && req.toEntryId < req.fromEntryId) throw invalid('to_entry_id', 'must not be before from_entry_id');
      if (running >= verificationsMax) throw new LedgerError('RESOURCE_EXHAUSTED', 'a journal verification is already running in this ledger process; try again later');
      running++;
      try {
        let lastSent = 0;
        const report = await read(() => verifyJournal(deps.pool, {
          fromSeq: req.fromEntryId === 0n ? 1n : req.fromEntryId,
          ...(req.toEntryId === 0n ? {} : { toSeq: req.toEntryId }),
          now: deps.clock.now(),
          signal: sink.signal,
          onProgress: (p) => {
            // Progress at most every 100 ms: a slow reader is not flooded.
            const now = Date.now();
            if (now - lastSent < 100) return;
            lastSent = now;
            void sink.write({ event: { $case: 'progress', value: { checkedEntryId: p.checkedSeq, toEntryId: p.toSeq, entriesChecked: BigInt(p.entries) } } });
          },
        }));
        await sink.write({
          event: {
            $case: 'report',
            value: {
              whole: report.findingCount === 0,
              fromEntryId: report.fromSeq,
              toEntryId: report.toSeq,
              entries: BigInt(report.entries),
              transfers: BigInt(report.transfers),
              accounts: BigInt(report.accounts),
              lots: BigInt(report.lots),
              holds: BigInt(report.holds),
              partial: report.partial,
              lastHash: Buffer.from(report.lastHash, 'hex'),
              findingCount: BigInt(report.findingCount),
              first: report.first ? findingToPb(report.first) : undefined,
              findings: report.findings.slice(0, findingsMax).map(findingToPb),
            },
          },
        });
      } finally {
        running--;
      }
    },

    async trialBalance(req) {
      const tb = await read(() => trialBalance(deps.pool, req.asOf ?? deps.clock.now(), { allAccounts: req.allAccounts }));
      return {
        cutEntryId: tb.cutSeq,
        rows: tb.rows.map((r) => ({
          accountId: r.accountId === '' ? 0n : BigInt(r.accountId), code: r.code, kind: r.kind, unit: r.unit, accounts: BigInt(r.accounts),
          debitsPosted: r.debitsPosted, creditsPosted: r.creditsPosted, debitsPending: r.debitsPending, creditsPending: r.creditsPending, balance: r.balance,
        })),
        totals: [...tb.totals].map(([unit, t]) => ({ unit, balance: t.balance, pending: t.pending })),
        balanced: tb.balanced,
      };
    },

    async reconcileStripe(req) {
      const p = period(req.from, req.to);
      if (!(await read(() => paymentsInboxExists(deps.pool)))) {
        throw new LedgerError('FAILED_PRECONDITION', 'this database has no payments inbox (payments.stripe_events) to reconcile against');
      }
      const result = reconcile(await read(() => stripeJournalItems(deps.pool, p)), await read(() => stripeInboxItems(deps.pool, p)), {
        journal: 'the journal',
        external: 'the Stripe inbox',
      });
      return { reconciliation: reconciliationToPb(result) };
    },

    async reconcileWavespeed(req) {
      const p = period(req.from, req.to);
      if (!deps.wavespeed) throw new LedgerError('FAILED_PRECONDITION', 'the ledger has no Wavespeed key configured (WAVESPEED_API_KEY)');
      let billing;
      try {
        billing = await wavespeedBillingItems({ ...deps.wavespeed, ...p });
      } catch (error) {
        throw new LedgerError('UNAVAILABLE', `Wavespeed's billing listing could not be read: ${(error as Error).message}`);
      }
      const result = reconcile(await read(() => wavespeedJournalItems(deps.pool, p)), billing, { journal: 'the journal', external: 'Wavespeed billing' });
      return { reconciliation: reconciliationToPb(result) };
    },
  };
}
