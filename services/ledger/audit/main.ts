// `npm run audit -- <command>`: the auditor's CLI (audit README). Reads the ledger's tables with
// SQL (a read-only role is enough, except for nothing: every command only reads), prints results
// on stdout and progress on stderr. Exit 0: whole / no exceptions; 1: damage or exceptions
// found; 2: bad arguments or configuration.
import { appendFileSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { z } from 'zod';
import { intFromEnv, parseEnv } from '../../lib/config.js';
import { checkpointValid, loadCheckpoints, parsePublicKey, parseSigningKey, rawPublicKey, signCheckpoint } from './checkpoint.js';
import { exportJournal, verifyExport } from './export-journal.js';
import { formatFinding, type Finding } from './journal-row.js';
import { marginChartSvg } from './margin-chart.js';
import { marginCsv, marginReport, marginTable, type MarginGroupBy } from './margin.js';
import { createProgress } from './progress.js';
import { journalBalanceTotals, stripeBalanceTotals } from './reconcile-stripe-balance.js';
import { paymentsInboxExists, stripeInboxItems, stripeJournalItems } from './reconcile-stripe.js';
import { wavespeedBillingItems, wavespeedJournalItems } from './reconcile-wavespeed.js';
import { reconcile, type ReconResult } from './reconcile.js';
import { csvField, fmt, table, trialBalance, trialBalanceCsv, trialBalanceTable } from './trial-balance.js';
import { verifyJournal, type InvariantReport } from './verify-journal.js';

/** The audit's environment, parsed once with zod. Secrets have no defaults. */
export const auditEnvSchema = z.object({
  DATABASE_URL: z.string().url().optional(),
  /** ed25519 private key (PKCS#8 PEM, or its 32-byte seed in hex or base64) for `checkpoint` and signed exports. */
  AUDIT_SIGNING_KEY: z.string().min(1).optional(),
  AUDIT_CHECKPOINTS_FILE: z.string().min(1).default('audit-checkpoints.jsonl'),
  AUDIT_PAGE_SIZE: intFromEnv(2_000, 10, 50_000),
  WAVESPEED_API_KEY: z.string().min(1).optional(),
  WAVESPEED_API_BASE: z.string().url().default('https://api.wavespeed.ai'),
  /** With it, `reconcile stripe` also ties the journal out against Stripe's balance transactions. */
  STRIPE_SECRET_KEY: z.string().min(1).optional(),
  STRIPE_API_BASE: z.string().url().default('https://api.stripe.com'),
});
export type AuditEnv = z.infer<typeof auditEnvSchema>;

export const usage = `usage: npm run audit -- <command> [options]

commands:
  verify [--from SEQ] [--to SEQ] [--checkpoints FILE --public-key KEY] [--json]
                         every invariant of the journal over the range; tables rebuilt and compared
  verify --export DIR [--public-key KEY]
                         an export checked offline (no database)
  checkpoint [--out FILE] [--no-verify]
                         sign the journal head with AUDIT_SIGNING_KEY (ed25519) and append it to FILE
  trial-balance [--as-of TIME] [--csv] [--all-accounts]
                         every account's balance at TIME, per unit, summing to zero
  margin [--from TIME] [--to TIME] [--by day|model|package] [--csv] [--chart FILE.svg]
                         recognised revenue, upstream cost and margin per group
  export --from SEQ|TIME --to SEQ|TIME --out DIR
                         entries and transfers as CSV and JSON lines with a manifest
  reconcile stripe [--from TIME] [--to TIME] [--csv]
                         the payments inbox against the journal, both ways; with STRIPE_SECRET_KEY also
                         Stripe's balance transactions against the journal's totals
  reconcile wavespeed [--from TIME] [--to TIME] [--csv]
                         captures against Wavespeed's billing listing, both ways

environment: DATABASE_URL (every command but verify --export), AUDIT_SIGNING_KEY, AUDIT_CHECKPOINTS_FILE,
  AUDIT_PAGE_SIZE, WAVESPEED_API_KEY, WAVESPEED_API_BASE, STRIPE_SECRET_KEY, STRIPE_API_BASE
exit status: 0 whole / no exceptions, 1 damage or exceptions found, 2 bad arguments or configuration`;

export class UsageError extends Error {}

export interface Io {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WriteStream;
  now: () => Date;
}

const seqPattern = /^[0-9]{1,19}$/;

function seqArg(value: string | undefined, flag: string): bigint | undefined {
  if (value === undefined) return undefined;
  if (!seqPattern.test(value) || BigInt(value) < 1n) throw new UsageError(`${flag}: not an entry sequence number: "${value}" (a whole number ≥ 1)`);
  return BigInt(value);
}

function timeArg(value: string | undefined, flag: string): Date | null {
  if (value === undefined) return null;
  const iso = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:\d{2})?)?$/;
  const ms = iso.test(value) ? Date.parse(/T/.test(value) && !/(Z|[+-]\d{2}:\d{2})$/.test(value) ? `${value}Z` : value) : NaN;
  if (Number.isNaN(ms)) throw new UsageError(`${flag}: not a date or time: "${value}" (ISO 8601, e.g. 2026-11-01 or 2026-11-01T12:00:00Z; UTC unless an offset is given)`);
  return new Date(ms);
}

function need<T>(value: T | undefined, what: string, command: string): T {
  if (value === undefined) throw new UsageError(`${command}: ${what} is required`);
  return value;
}

/** Runs one CLI invocation; returns the exit status. */
export async function runAudit(argv: string[], env: Record<string, string | undefined>, io: Io): Promise<number> {
  const out = (s: string) => void io.stdout.write(s);
  try {
    const [command, ...rest] = argv;
    if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
      out(`${usage}\n`);
      return command === undefined ? 2 : 0;
    }
    let config: AuditEnv;
    try {
      config = parseEnv('audit', auditEnvSchema, env);
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
    const database = (name: string) => {
      const url = need(config.DATABASE_URL, 'DATABASE_URL (the ledger database; a read-only role is enough)', name);
      const pool = new pg.Pool({ connectionString: url, max: 2 });
      pool.on('error', () => {});
      return pool;
    };
    const parse = (options: Record<string, { type: 'string' | 'boolean' }>, args = rest): Record<string, string | boolean | undefined> => {
      try {
        return parseArgs({ args, options, strict: true, allowPositionals: false }).values as Record<string, string | boolean | undefined>;
      } catch (error) {
        throw new UsageError(`${command}: ${(error as Error).message}`);
      }
    };

    switch (command) {
      case 'verify': {
        const a = parse({
          from: { type: 'string' }, to: { type: 'string' }, checkpoints: { type: 'string' }, 'public-key': { type: 'string' },
          export: { type: 'string' }, json: { type: 'boolean' },
        });
        if (a.export !== undefined) return await verifyExportCommand(a.export as string, a['public-key'] as string | undefined, io);
        const fromSeq = seqArg(a.from as string | undefined, '--from');
        const toSeq = seqArg(a.to as string | undefined, '--to');
        if (fromSeq !== undefined && toSeq !== undefined && toSeq < fromSeq) throw new UsageError('--to must not be before --from');
        if ((a.checkpoints === undefined) !== (a['public-key'] === undefined)) throw new UsageError('--checkpoints and --public-key go together');
        let checkpoints: ReturnType<typeof loadCheckpoints> | undefined;
        if (a.checkpoints !== undefined) {
          try {
            checkpoints = loadCheckpoints(a.checkpoints as string, parsePublicKey(a['public-key'] as string));
          } catch (error) {
            throw new UsageError(`--checkpoints: ${(error as Error).message}`);
          }
        }
        const pool = database('verify');
        try {
          const progress = createProgress('verify', io.stderr);
          const report = await verifyJournal(pool, {
            fromSeq, toSeq, checkpoints, now: io.now(), pageSize: config.AUDIT_PAGE_SIZE,
            onProgress: (p) => progress.update(p.entries, Number(p.toSeq - p.fromSeq + 1n)),
          });
          progress.finish(`${report.entries} entries in ${(report.elapsedMs / 1000).toFixed(2)} s`);
          if (a.json) out(JSON.stringify(report, (_k, v) => (typeof v === 'bigint' ? v.toString() : v), 2) + '\n');
          else out(verifySummary(report, checkpoints?.length ?? 0));
          return report.findingCount === 0 ? 0 : 1;
        } finally {
          await pool.end();
        }
      }

      case 'checkpoint': {
        const a = parse({ out: { type: 'string' }, 'no-verify': { type: 'boolean' } });
        const key = (() => {
          const text = need(config.AUDIT_SIGNING_KEY, 'AUDIT_SIGNING_KEY (an ed25519 private key)', 'checkpoint');
          try {
            return parseSigningKey(text);
          } catch (error) {
            throw new UsageError(`AUDIT_SIGNING_KEY: ${(error as Error).message}`);
          }
        })();
        const file = (a.out as string | undefined) ?? config.AUDIT_CHECKPOINTS_FILE;
        const pool = database('checkpoint');
        try {
          let seq: bigint;
          if (!a['no-verify']) {
            // Sign only a journal that verifies: a checkpoint vouches for everything before it.
            const progress = createProgress('verify', io.stderr);
            const report = await verifyJournal(pool, { now: io.now(), pageSize: config.AUDIT_PAGE_SIZE, onProgress: (p) => progress.update(p.entries, Number(p.toSeq)) });
            progress.finish(`${report.entries} entries`);
            if (report.findingCount > 0) {
              out(verifySummary(report, 0));
              out('checkpoint: not signed: the journal does not verify\n');
              return 1;
            }
            seq = report.toSeq;
          } else {
            seq = BigInt((await pool.query<{ seq: string }>('SELECT seq::text FROM journal_head WHERE id = 1')).rows[0]!.seq);
          }
          // Inputs: the verified head seq. Locks: none. Output: that entry's hash and time.
          const head = (
            await pool.query<{ hash: string; r: string }>(
              `SELECT encode(hash, 'hex') AS hash, to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS r FROM entries WHERE seq = $1`,
              [seq.toString()],
            )
          ).rows[0];
          if (!head) throw new UsageError('checkpoint: the journal is empty: there is nothing to sign');
          const checkpoint = signCheckpoint({ seq: seq.toString(), hash: head.hash, head_recorded_at: head.r, signed_at: io.now().toISOString() }, key);
          appendFileSync(file, JSON.stringify(checkpoint) + '\n');
          out(`${JSON.stringify(checkpoint)}\n`);
          io.stderr.write(`checkpoint: entry ${checkpoint.seq} signed; appended to ${file}; public key ${rawPublicKey(key)}\n`);
          return checkpointValid(checkpoint, key) ? 0 : 1;
        } finally {
          await pool.end();
        }
      }

      case 'trial-balance': {
        const a = parse({ 'as-of': { type: 'string' }, csv: { type: 'boolean' }, 'all-accounts': { type: 'boolean' } });
        const asOf = timeArg(a['as-of'] as string | undefined, '--as-of') ?? io.now();
        const pool = database('trial-balance');
        try {
          const tb = await trialBalance(pool, asOf, { allAccounts: a['all-accounts'] === true });
          if (a.csv) out(trialBalanceCsv(tb));
          else {
            out(`trial balance as of ${asOf.toISOString()} (entries up to ${tb.cutSeq})\n\n`);
            out(trialBalanceTable(tb));
            out(`\n${tb.balanced ? 'balanced: every unit sums to zero' : 'NOT BALANCED: a unit does not sum to zero'}\n`);
          }
          return tb.balanced ? 0 : 1;
        } finally {
          await pool.end();
        }
      }

      case 'margin': {
        const a = parse({ from: { type: 'string' }, to: { type: 'string' }, by: { type: 'string' }, csv: { type: 'boolean' }, chart: { type: 'string' } });
        const by = (a.by as string | undefined) ?? 'day';
        if (!['day', 'model', 'package'].includes(by)) throw new UsageError(`--by: "${by}" is not one of day, model, package`);
        const from = timeArg(a.from as string | undefined, '--from');
        const to = timeArg(a.to as string | undefined, '--to');
        if (from && to && to <= from) throw new UsageError('--to must be after --from');
        if (a.chart !== undefined && !/\.svg$/i.test(a.chart as string)) throw new UsageError('--chart: the file name must end in .svg');
        const pool = database('margin');
        try {
          const progress = createProgress('margin', io.stderr);
          const report = await marginReport(pool, { by: by as MarginGroupBy, from, to, onProgress: (d, t) => progress.update(d, t) });
          progress.finish(`entries ${report.fromSeq}–${report.toSeq}`);
          out(a.csv ? marginCsv(report) : marginTable(report));
          if (a.chart !== undefined) {
            writeFileSync(a.chart as string, marginChartSvg(report));
            io.stderr.write(`margin: chart written to ${a.chart as string}\n`);
          }
          return 0;
        } finally {
          await pool.end();
        }
      }

      case 'export': {
        const a = parse({ from: { type: 'string' }, to: { type: 'string' }, out: { type: 'string' } });
        const outDir = need(a.out as string | undefined, '--out DIR', 'export');
        const fromText = need(a.from as string | undefined, '--from', 'export');
        const toText = need(a.to as string | undefined, '--to', 'export');
        const signingKey = config.AUDIT_SIGNING_KEY ? parseSigningKey(config.AUDIT_SIGNING_KEY) : undefined;
        const pool = database('export');
        try {
          const fromSeq = seqPattern.test(fromText) ? seqArg(fromText, '--from')! : await seqAt(pool, timeArg(fromText, '--from')!, 'first');
          const toSeq = seqPattern.test(toText) ? seqArg(toText, '--to')! : await seqAt(pool, timeArg(toText, '--to')!, 'last');
          const progress = createProgress('export', io.stderr);
          const manifest = await exportJournal(pool, { fromSeq, toSeq, outDir, signingKey, now: io.now(), onProgress: (d, t) => progress.update(d, t) });
          progress.finish(`${manifest.counts.entries} entries, ${manifest.counts.transfers} transfers`);
          out(`export written to ${outDir}: entries ${manifest.first_seq ?? '-'}–${manifest.last_seq ?? '-'}, head hash ${manifest.head_hash ?? '-'}` +
            `${manifest.checkpoint ? ', signed' : ', unsigned (no AUDIT_SIGNING_KEY)'}\n`);
          return 0;
        } finally {
          await pool.end();
        }
      }

      case 'reconcile': {
        const [target, ...more] = rest;
        if (target !== 'stripe' && target !== 'wavespeed') throw new UsageError(`reconcile: say what to reconcile: "stripe" or "wavespeed"${target ? ` (not "${target}")` : ''}`);
        const a = parse({ from: { type: 'string' }, to: { type: 'string' }, csv: { type: 'boolean' } }, more);
        const period = { from: timeArg(a.from as string | undefined, '--from'), to: timeArg(a.to as string | undefined, '--to') };
        if (target === 'wavespeed') need(config.WAVESPEED_API_KEY, 'WAVESPEED_API_KEY (for the billing listing)', 'reconcile wavespeed');
        const pool = database(`reconcile ${target}`);
        try {
          const results: [string, ReconResult][] = [];
          if (target === 'stripe') {
            if (!(await paymentsInboxExists(pool))) {
              throw new UsageError('reconcile stripe: this database has no payments inbox (payments.stripe_events); point DATABASE_URL at the database the payments service uses');
            }
            const journal = await stripeJournalItems(pool, period);
            results.push(['stripe', reconcile(journal, await stripeInboxItems(pool, period), { journal: 'the journal', external: 'the Stripe inbox' })]);
            if (config.STRIPE_SECRET_KEY) {
              const balance = await stripeBalanceTotals({ secretKey: config.STRIPE_SECRET_KEY, apiBase: config.STRIPE_API_BASE, ...period });
              results.push(['stripe balance transactions', reconcile(journalBalanceTotals(journal), balance, { journal: 'the journal', external: 'Stripe\'s balance' })]);
            }
          } else {
            const billing = await wavespeedBillingItems({ baseUrl: config.WAVESPEED_API_BASE, apiKey: config.WAVESPEED_API_KEY!, ...period });
            results.push(['wavespeed', reconcile(await wavespeedJournalItems(pool, period), billing, { journal: 'the journal', external: 'Wavespeed billing' })]);
          }
          if (a.csv) out(reconCsv(results.map(([, r]) => r)));
          else out(results.map(([name, r]) => reconTable(name, r)).join('\n'));
          return results.every(([, r]) => r.exceptions.length === 0) ? 0 : 1;
        } finally {
          await pool.end();
        }
      }

      default:
        throw new UsageError(`unknown command "${command}"`);
    }
  } catch (error) {
    if (error instanceof UsageError) {
      io.stderr.write(`audit: ${error.message}\n(npm run audit -- help)\n`);
      return 2;
    }
    throw error;
  }
}

async function seqAt(pool: pg.Pool, at: Date, which: 'first' | 'last'): Promise<bigint> {
  // Inputs: a time. Locks: none. Output: the first entry recorded at or after it, or the last before it.
  const { rows } = await pool.query<{ s: string | null }>(
    which === 'first' ? 'SELECT MIN(seq)::text AS s FROM entries WHERE recorded_at >= $1' : 'SELECT MAX(seq)::text AS s FROM entries WHERE recorded_at < $1',
    [at.toISOString()],
  );
  return BigInt(rows[0]?.s ?? (which === 'first' ? '1' : '0'));
}

async function verifyExportCommand(dir: string, publicKeyText: string | undefined, io: Io): Promise<number> {
  let key;
  if (publicKeyText !== undefined) {
    try {
      key = parsePublicKey(publicKeyText);
    } catch (error) {
      throw new UsageError(`--public-key: ${(error as Error).message}`);
    }
  }
  const report = await verifyExport(dir, key);
  const m = report.manifest;
  if (report.findings.length === 0) {
    io.stdout.write(
      `export whole: ${report.entries} entries ${m?.first_seq ?? '-'}–${m?.last_seq ?? '-'}, head hash ${m?.head_hash ?? '-'}, files match their sha256, ` +
        `counts and totals match the manifest; signature: ${report.signature}\n`,
    );
    return 0;
  }
  io.stdout.write(`EXPORT DAMAGED: ${describe(report.first!)}\n`);
  for (const f of report.findings.slice(0, 20)) io.stdout.write(`  ${formatFinding(f)}\n`);
  io.stdout.write(`${report.findings.length} finding(s)\n`);
  return 1;
}

function describe(f: Finding): string {
  const where = f.seq === null ? `${f.table}.${f.column} (${f.key})` : `entry ${f.seq}: ${f.table}.${f.column} (${f.key})`;
  return `${where}: expected ${f.expected}, found ${f.found} — ${f.message}`;
}

export function verifySummary(report: InvariantReport, checkpoints: number): string {
  const lines: string[] = [];
  const range = `entries ${report.fromSeq}–${report.toSeq}${report.partial ? ' (a range: tables not compared)' : ''}`;
  const rate = report.elapsedMs > 0 ? Math.round(report.entries / (report.elapsedMs / 1000)) : 0;
  if (report.findingCount === 0) {
    lines.push(`journal whole: ${range}, ${report.entries} entries, ${report.transfers} transfers, ${rate} entries/s`);
    if (!report.partial) lines.push(`tables rebuilt from the journal and equal: ${report.accounts} accounts, ${report.lots} lots, ${report.holds} holds`);
    lines.push(`last hash ${report.lastHash}${checkpoints > 0 ? `; checkpoints matched: ${report.checkpointsMatched.join(', ') || 'none in range'}` : ''}`);
  } else {
    const first = report.first!;
    lines.push(first.seq !== null ? `DAMAGED: first bad entry ${first.seq}: ${describe(first)}` : `DAMAGED: ${describe(first)} (no entry is damaged; a table row is)`);
    for (const f of report.findings.slice(0, 20)) if (f !== first) lines.push(`  ${formatFinding(f)}`);
    lines.push(`${report.findingCount} finding(s) over ${range}`);
  }
  return lines.join('\n') + '\n';
}

function reconTable(target: string, r: ReconResult): string {
  const lines = [
    `reconcile ${target}: ${r.journalItems} journal items, ${r.externalItems} external items, ${r.matched} matched, ${r.exceptions.length} exception(s)`,
  ];
  for (const [currency, t] of r.totals) lines.push(`  ${currency || '(none)'}: journal ${fmt(t.journal)} micros, external ${fmt(t.external)} micros`);
  if (r.exceptions.length > 0) {
    lines.push('');
    lines.push(
      table(
        ['exception', 'key', 'currency', 'journal', 'external', 'sources'],
        r.exceptions.map((e) => [
          e.kind, e.key, e.currency, e.journalMicros === null ? '—' : fmt(e.journalMicros), e.externalMicros === null ? '—' : fmt(e.externalMicros),
          [...e.journalSources, ...e.externalSources].join(', '),
        ]),
        [false, false, false, true, true, false],
      ).trimEnd(),
    );
  }
  return lines.join('\n') + '\n';
}

function reconCsv(results: ReconResult[]): string {
  const lines = ['exception,key,currency,journal_micros,external_micros,journal_sources,external_sources'];
  for (const e of results.flatMap((r) => r.exceptions)) {
    lines.push([e.kind, csvField(e.key), e.currency, e.journalMicros ?? '', e.externalMicros ?? '', csvField(e.journalSources.join(' ')), csvField(e.externalSources.join(' '))].join(','));
  }
  return lines.join('\n') + '\n';
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  runAudit(process.argv.slice(2), process.env, { stdout: process.stdout, stderr: process.stderr, now: () => new Date() }).then(
    (code) => process.exit(code),
    (error: unknown) => {
      process.stderr.write(`audit: ${(error as Error).stack ?? String(error)}\n`);
      process.exit(3);
    },
  );
}
