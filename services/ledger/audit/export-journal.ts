import { createHash, type KeyObject } from 'node:crypto';
import { createReadStream, createWriteStream, mkdirSync, readFileSync, statSync, writeFileSync, type WriteStream } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type pg from 'pg';
import { checkpointValid, signCheckpoint, type Checkpoint } from './checkpoint.js';
import { readJournalPages, walkClient } from './db-source.js';
import { formatFinding, type Finding, type JournalRow } from './journal-row.js';
import { JournalReplay } from './replay.js';
import { csvField } from './trial-balance.js';

/**
 * Export of a range of the journal for an auditor (audit README, "export"): the entries with
 * their transfers as JSON lines (`entries.jsonl`, one entry per line, exactly the rows the
 * verifier checks: every hashed field), the same as CSV (`entries.csv`, `transfers.csv`), the
 * account codes (`accounts.csv`), and `manifest.json` with counts, per-unit totals, the first
 * and last sequence numbers, the hash the range starts from and the one it ends at, each file's
 * sha256, and, when a signing key is given, an ed25519 checkpoint of the last entry.
 * `verify --export DIR` checks all of it without a database.
 */
export const exportFormat = 'credit-ledger-export-v1';

export interface UnitTotals {
  /** Amounts of POSTED and POST_PENDING transfers (what moved). */
  posted: string;
  /** Amounts of PENDING transfers (reserved) and VOID_PENDING ones (given back). */
  pending: string;
  voided: string;
  transfers: number;
}

export interface ExportManifest {
  format: typeof exportFormat;
  created_at: string;
  from_seq: string;
  to_seq: string;
  first_seq: string | null;
  last_seq: string | null;
  /** prev_hash of the first entry: where this range hangs on the chain. */
  prev_hash: string | null;
  /** hash of the last entry. */
  head_hash: string | null;
  journal_head: { seq: string; hash: string };
  counts: { entries: number; transfers: number; by_kind: Record<string, number> };
  totals: Record<string, UnitTotals>;
  files: Record<string, { sha256: string; bytes: number }>;
  checkpoint: Checkpoint | null;
}

class HashedFile {
  readonly hash = createHash('sha256');
  readonly stream: WriteStream;
  bytes = 0;
  constructor(file: string) {
    this.stream = createWriteStream(file);
  }
  async write(text: string): Promise<void> {
    const data = Buffer.from(text);
    this.hash.update(data);
    this.bytes += data.length;
    if (!this.stream.write(data)) await new Promise<void>((resolve) => this.stream.once('drain', resolve));
  }
  async close(): Promise<{ sha256: string; bytes: number }> {
    await new Promise<void>((resolve, reject) => this.stream.end((error?: Error | null) => (error ? reject(error) : resolve())));
    return { sha256: this.hash.digest('hex'), bytes: this.bytes };
  }
}

class Totals {
  readonly byUnit = new Map<string, { posted: bigint; pending: bigint; voided: bigint; transfers: number }>();
  readonly byKind: Record<string, number> = {};
  entries = 0;
  transfers = 0;
  add(row: JournalRow): void {
    this.entries++;
    this.byKind[row.kind] = (this.byKind[row.kind] ?? 0) + 1;
    for (const t of row.transfers) this.addTransfer(t.unit, t.kind, BigInt(t.amount));
  }
  addTransfer(unit: string, kind: string, amount: bigint): void {
    this.transfers++;
    const u = this.byUnit.get(unit) ?? { posted: 0n, pending: 0n, voided: 0n, transfers: 0 };
    if (kind === 'POSTED' || kind === 'POST_PENDING') u.posted += amount;
    else if (kind === 'PENDING') u.pending += amount;
    else u.voided += amount;
    u.transfers++;
    this.byUnit.set(unit, u);
  }
  json(): Record<string, UnitTotals> {
    const out: Record<string, UnitTotals> = {};
    for (const [unit, u] of [...this.byUnit].sort(([a], [b]) => a.localeCompare(b))) {
      out[unit] = { posted: u.posted.toString(), pending: u.pending.toString(), voided: u.voided.toString(), transfers: u.transfers };
    }
    return out;
  }
}

const entryCsvHeader = 'seq,kind,user_id,hold_id,idempotency_key,actor,recorded_at,effective_at,policy_version,reverses_seq,metadata,prev_hash,hash\n';
const transferCsvHeader = 'entry_seq,idx,kind,debit_account_id,credit_account_id,amount,unit,pending_seq,pending_idx\n';

export async function exportJournal(
  pool: pg.Pool,
  options: { fromSeq: bigint; toSeq: bigint; outDir: string; signingKey?: KeyObject; now: Date; onProgress?: (done: number, total: number) => void },
): Promise<ExportManifest> {
  mkdirSync(options.outDir, { recursive: true });
  const file = (name: string) => new HashedFile(path.join(options.outDir, name));
  const jsonl = file('entries.jsonl');
  const entriesCsv = file('entries.csv');
  const transfersCsv = file('transfers.csv');
  const accountsCsv = file('accounts.csv');
  const totals = new Totals();
  const client = await walkClient(pool);
  let first: JournalRow | null = null;
  let last: JournalRow | null = null;
  let head: { seq: string; hash: string };
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    // Inputs: none. Locks: none. Output: the journal head in this snapshot.
    head = (await client.query<{ seq: string; hash: string }>(`SELECT seq::text, encode(hash, 'hex') AS hash FROM journal_head WHERE id = 1`)).rows[0]!;
    const toSeq = options.toSeq > BigInt(head.seq) ? BigInt(head.seq) : options.toSeq;
    await entriesCsv.write(entryCsvHeader);
    await transfersCsv.write(transferCsvHeader);
    const total = Number(toSeq - options.fromSeq + 1n);
    if (toSeq >= options.fromSeq) {
      for await (const page of readJournalPages(client, options.fromSeq, toSeq, 2_000)) {
        for (const row of page) {
          first ??= row;
          last = row;
          totals.add(row);
          await jsonl.write(JSON.stringify(row) + '\n');
          await entriesCsv.write(
            [
              row.seq, row.kind, csvField(row.user_id ?? ''), row.hold_id ?? '', csvField(row.idempotency_key), csvField(row.actor), row.recorded_at,
              row.effective_at, row.policy_version ?? '', row.reverses_seq ?? '', csvField(JSON.stringify(row.metadata)), row.prev_hash, row.hash,
            ].join(',') + '\n',
          );
          let lines = '';
          for (const t of row.transfers) {
            lines += [row.seq, t.idx, t.kind, t.debit_account_id, t.credit_account_id, t.amount, t.unit, t.pending_seq ?? '', t.pending_idx ?? ''].join(',') + '\n';
          }
          await transfersCsv.write(lines);
        }
        options.onProgress?.(totals.entries, total);
      }
    }
    await accountsCsv.write('id,code,unit,kind,user_id\n');
    let after = '0';
    for (;;) {
      // Inputs: the last id of the previous page. Locks: none. Output: the next page of accounts.
      const page = await client.query<{ id: string; code: string; unit: string; kind: string; user_id: string | null }>(
        'SELECT a.id::text AS id, a.code, a.unit, a.kind, a.user_id FROM accounts a WHERE a.id > $1 ORDER BY a.id LIMIT 5000',
        [after],
      );
      if (page.rows.length === 0) break;
      await accountsCsv.write(page.rows.map((a) => [a.id, csvField(a.code), a.unit, a.kind, csvField(a.user_id ?? '')].join(',') + '\n').join(''));
      after = page.rows[page.rows.length - 1]!.id;
    }
    await client.query('COMMIT');
  } finally {
    await client.end();
  }
  const files: ExportManifest['files'] = {};
  for (const [name, f] of [['entries.jsonl', jsonl], ['entries.csv', entriesCsv], ['transfers.csv', transfersCsv], ['accounts.csv', accountsCsv]] as const) {
    files[name] = await f.close();
  }
  const manifest: ExportManifest = {
    format: exportFormat,
    created_at: options.now.toISOString(),
    from_seq: options.fromSeq.toString(),
    to_seq: options.toSeq.toString(),
    first_seq: first?.seq ?? null,
    last_seq: last?.seq ?? null,
    prev_hash: first?.prev_hash ?? null,
    head_hash: last?.hash ?? null,
    journal_head: head,
    counts: { entries: totals.entries, transfers: totals.transfers, by_kind: totals.byKind },
    totals: totals.json(),
    files,
    checkpoint:
      options.signingKey && last
        ? signCheckpoint({ seq: last.seq, hash: last.hash, head_recorded_at: last.recorded_at, signed_at: options.now.toISOString() }, options.signingKey)
        : null,
  };
  writeFileSync(path.join(options.outDir, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
  return manifest;
}

export interface ExportReport {
  manifest: ExportManifest | null;
  entries: number;
  findings: Finding[];
  violations: string[];
  first: Finding | undefined;
  signature: 'valid' | 'not checked' | 'absent';
}

/**
 * Verifies an export offline: each file against its sha256 in the manifest, the entries'
 * chain and hashes (the same JournalReplay as on a database), the range's anchors (its first
 * prev_hash and last hash), counts and per-unit totals from both the JSON lines and the CSV,
 * and the checkpoint signature with the auditor's public key.
 */
export async function verifyExport(dir: string, publicKey?: KeyObject): Promise<ExportReport> {
  const findings: Finding[] = [];
  const add = (f: Omit<Finding, 'seq'> & { seq?: string | null }) => findings.push({ seq: null, ...f });
  const done = (manifest: ExportManifest | null, entries: number, signature: ExportReport['signature'], replay?: JournalReplay): ExportReport => {
    const all = [...(replay?.findings ?? []), ...findings];
    return {
      manifest, entries, findings: all, violations: all.map(formatFinding), signature,
      first: replay?.firstFinding ?? all[0],
    };
  };
  let manifest: ExportManifest;
  try {
    manifest = JSON.parse(readFileSync(path.join(dir, 'manifest.json'), 'utf8')) as ExportManifest;
    if (manifest.format !== exportFormat) throw new Error(`format is ${String(manifest.format)}`);
  } catch (error) {
    add({ table: 'manifest.json', column: 'format', key: dir, expected: exportFormat, found: (error as Error).message, message: 'not a readable export manifest' });
    return done(null, 0, 'absent');
  }
  for (const [name, want] of Object.entries(manifest.files ?? {})) {
    const file = path.join(dir, name);
    let got: { sha256: string; bytes: number };
    try {
      got = { sha256: await sha256File(file), bytes: statSync(file).size };
    } catch {
      add({ table: name, column: 'file', key: name, expected: 'the file', found: 'missing', message: 'a file the manifest lists is missing' });
      continue;
    }
    if (got.sha256 !== want.sha256 || got.bytes !== want.bytes) {
      add({ table: name, column: 'sha256', key: name, expected: `${want.sha256} (${want.bytes} bytes)`, found: `${got.sha256} (${got.bytes} bytes)`, message: 'the file was changed after the export' });
    }
  }

  let signature: ExportReport['signature'] = 'absent';
  const anchors = [];
  if (manifest.checkpoint) {
    if (!publicKey) signature = 'not checked';
    else if (!checkpointValid(manifest.checkpoint, publicKey)) {
      signature = 'not checked';
      add({ table: 'manifest.json', column: 'checkpoint.signature', key: `entry ${manifest.checkpoint.seq}`, expected: 'a signature by the given key', found: 'invalid', message: 'the export\'s checkpoint signature does not verify' });
    } else {
      signature = 'valid';
      anchors.push({ seq: manifest.checkpoint.seq, hash: manifest.checkpoint.hash, label: `signed ${manifest.checkpoint.signed_at}` });
    }
  }

  const firstSeq = BigInt(manifest.first_seq ?? manifest.from_seq ?? '1');
  const replay = new JournalReplay({ fromSeq: firstSeq, checkpoints: anchors });
  const totals = new Totals();
  let first: JournalRow | null = null;
  let lineNo = 0;
  try {
    const lines = createInterface({ input: createReadStream(path.join(dir, 'entries.jsonl')), crlfDelay: Infinity });
    for await (const line of lines) {
      lineNo++;
      if (line === '') continue;
      let row: JournalRow;
      try {
        row = JSON.parse(line) as JournalRow;
        totals.add(row);
      } catch (error) {
        add({ table: 'entries.jsonl', column: `line ${lineNo}`, key: `line ${lineNo}`, expected: 'an entry as JSON', found: (error as Error).message, message: 'a line of the export does not parse' });
        continue;
      }
      first ??= row;
      replay.apply(row);
    }
  } catch {
    add({ table: 'entries.jsonl', column: 'file', key: 'entries.jsonl', expected: 'the file', found: 'unreadable', message: 'the entries file cannot be read' });
  }
  const expect = (column: string, want: unknown, got: unknown, message: string) => {
    if (String(want) !== String(got)) add({ table: 'manifest.json', column, key: dir, expected: String(want), found: String(got), message });
  };
  expect('prev_hash', manifest.prev_hash, first?.prev_hash ?? null, 'the first entry does not hang on the chain where the manifest says');
  expect('head_hash', manifest.head_hash, replay.lastSeq === null ? null : replay.lastHash, 'the last entry\'s hash is not the manifest\'s head hash');
  expect('last_seq', manifest.last_seq, replay.lastSeq, 'the export does not end where the manifest says');
  expect('counts.entries', manifest.counts?.entries, totals.entries, 'entry count');
  expect('counts.transfers', manifest.counts?.transfers, totals.transfers, 'transfer count');
  expect('totals', JSON.stringify(manifest.totals), JSON.stringify(totals.json()), 'per-unit totals of entries.jsonl differ from the manifest');
  if (manifest.checkpoint && signature === 'valid') {
    expect('checkpoint.seq', manifest.checkpoint.seq, manifest.last_seq, 'the checkpoint signs another entry than the last');
  }
  // The CSV carries the same transfers: its totals must be the manifest's too.
  try {
    const csvTotals = new Totals();
    let header = true;
    const lines = createInterface({ input: createReadStream(path.join(dir, 'transfers.csv')), crlfDelay: Infinity });
    for await (const line of lines) {
      if (header || line === '') {
        header = false;
        continue;
      }
      const f = line.split(',');
      if (!/^[0-9]+$/.test(f[5] ?? '')) {
        add({ table: 'transfers.csv', column: 'amount', key: line.slice(0, 40), expected: 'an integer', found: f[5] ?? '', message: 'a malformed CSV row' });
        continue;
      }
      csvTotals.addTransfer(f[6]!, f[2]!, BigInt(f[5]!));
    }
    expect('totals (transfers.csv)', JSON.stringify(manifest.totals), JSON.stringify(csvTotals.json()), 'per-unit totals of transfers.csv differ from the manifest');
  } catch {
    add({ table: 'transfers.csv', column: 'file', key: 'transfers.csv', expected: 'the file', found: 'unreadable', message: 'the transfers file cannot be read' });
  }
  return done(manifest, replay.entries, signature, replay);
}

async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
