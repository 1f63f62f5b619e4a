import type { PrismaClient } from '../../lib/db.js';
import type { Prisma } from '../../generated/prisma/client.js';
import { allocationFromJson, type AllocationJson } from '../domain/canonical.js';
import { invalid, notFound } from '../domain/errors.js';
import { limits } from '../domain/limits.js';
import type { Allocation, EntryKind, Metadata, TransferKind } from '../domain/types.js';

export interface TransferView {
  idx: number;
  kind: TransferKind;
  debitAccountId: bigint;
  debitAccountCode: string;
  creditAccountId: bigint;
  creditAccountCode: string;
  amount: bigint;
  unit: string;
  pendingSeq: bigint | null;
  pendingIdx: number | null;
}

export interface EntryView {
  seq: bigint;
  kind: EntryKind;
  userId: string | null;
  holdId: string | null;
  idempotencyKey: string;
  actor: string;
  recordedAt: Date;
  effectiveAt: Date;
  policyVersion: string | null;
  allocation: Allocation[];
  metadata: Metadata;
  requestHash: Buffer;
  prevHash: Buffer;
  hash: Buffer;
  reversesSeq: bigint | null;
  reversedBySeq: bigint | null;
  transfers: TransferView[];
}

export interface EntryFilter {
  userId: string | null;
  kind: EntryKind | null;
  recordedFrom: Date | null;
  recordedBefore: Date | null;
}

/** Ordinary reads of the journal, through Prisma. */
export class EntryReader {
  constructor(private readonly prisma: PrismaClient) {}

  async get(seq: bigint): Promise<EntryView> {
    if (seq <= 0n) throw invalid('entry_id', 'must be positive');
    const entry = await this.prisma.entry.findUnique({ where: { seq } });
    if (!entry) throw notFound('entry_id', `no entry ${seq}`);
    const [view] = await this.#withTransfers([entry]);
    return view!;
  }

  /**
   * One page of entries in sequence order. The page token carries the last sequence number and
   * a fingerprint of the filter, so a token cannot be replayed against another filter.
   */
  async list(
    filter: EntryFilter,
    pageSize: number,
    pageToken: string,
  ): Promise<{ entries: EntryView[]; nextPageToken: string }> {
    if (!Number.isInteger(pageSize) || pageSize < 0 || pageSize > limits.listPageSizeMax) {
      throw invalid('page_size', `must be between 1 and ${limits.listPageSizeMax} (0 for ${limits.listPageSizeDefault})`);
    }
    const size = pageSize === 0 ? limits.listPageSizeDefault : pageSize;
    const fingerprint = filterFingerprint(filter);
    const afterSeq = pageToken === '' ? 0n : decodePageToken(pageToken, fingerprint);
    const where: Prisma.EntryWhereInput = { seq: { gt: afterSeq } };
    if (filter.userId !== null) where.userId = filter.userId;
    if (filter.kind !== null) where.kind = filter.kind;
    if (filter.recordedFrom !== null || filter.recordedBefore !== null) {
      where.recordedAt = {
        ...(filter.recordedFrom ? { gte: filter.recordedFrom } : {}),
        ...(filter.recordedBefore ? { lt: filter.recordedBefore } : {}),
      };
    }
    const rows = await this.prisma.entry.findMany({ where, orderBy: { seq: 'asc' }, take: size + 1 });
    const page = rows.slice(0, size);
    const entries = await this.#withTransfers(page);
    const last = page[page.length - 1];
    const nextPageToken = rows.length > size && last ? encodePageToken(last.seq, fingerprint) : '';
    return { entries, nextPageToken };
  }

  /** Up to `limit` entries from sequence `fromSeq` on, in order (for StreamJournal). */
  async from(fromSeq: bigint, limit: number): Promise<EntryView[]> {
    const rows = await this.prisma.entry.findMany({ where: { seq: { gte: fromSeq } }, orderBy: { seq: 'asc' }, take: limit });
    return this.#withTransfers(rows);
  }

  async #withTransfers(entries: Prisma.EntryModel[]): Promise<EntryView[]> {
    if (entries.length === 0) return [];
    const reversals = await this.prisma.entry.findMany({
      where: { reversesSeq: { in: entries.map((e) => e.seq) } },
      select: { seq: true, reversesSeq: true },
    });
    const reversedBy = new Map(reversals.map((r) => [r.reversesSeq!, r.seq]));
    const transfers = await this.prisma.transfer.findMany({
      where: { entrySeq: { in: entries.map((e) => e.seq) } },
      orderBy: [{ entrySeq: 'asc' }, { idx: 'asc' }],
    });
    const accountIds = [...new Set(transfers.flatMap((t) => [t.debitAccountId, t.creditAccountId]))];
    const accounts = await this.prisma.account.findMany({
      where: { id: { in: accountIds } },
      select: { id: true, code: true },
    });
    const codes = new Map(accounts.map((a) => [a.id, a.code]));
    const bySeq = new Map<bigint, TransferView[]>();
    for (const t of transfers) {
      const list = bySeq.get(t.entrySeq) ?? [];
      list.push({
        idx: t.idx,
        kind: t.kind as TransferKind,
        debitAccountId: t.debitAccountId,
        debitAccountCode: codes.get(t.debitAccountId) ?? '',
        creditAccountId: t.creditAccountId,
        creditAccountCode: codes.get(t.creditAccountId) ?? '',
        amount: t.amount,
        unit: t.unit,
        pendingSeq: t.pendingSeq,
        pendingIdx: t.pendingIdx,
      });
      bySeq.set(t.entrySeq, list);
    }
    return entries.map((e) => ({
      seq: e.seq,
      kind: e.kind as EntryKind,
      userId: e.userId,
      holdId: e.holdId,
      idempotencyKey: e.idempotencyKey,
      actor: e.actor,
      recordedAt: e.recordedAt,
      effectiveAt: e.effectiveAt,
      policyVersion: e.policyVersion,
      allocation: e.allocation === null ? [] : allocationFromJson(e.allocation as unknown as AllocationJson[]),
      metadata: e.metadata as Metadata,
      requestHash: Buffer.from(e.requestHash),
      prevHash: Buffer.from(e.prevHash),
      hash: Buffer.from(e.hash),
      reversesSeq: e.reversesSeq,
      reversedBySeq: reversedBy.get(e.seq) ?? null,
      transfers: bySeq.get(e.seq) ?? [],
    }));
  }
}

function filterFingerprint(filter: EntryFilter): string {
  return [filter.userId ?? '', filter.kind ?? '', filter.recordedFrom?.toISOString() ?? '', filter.recordedBefore?.toISOString() ?? ''].join('|');
}

function encodePageToken(afterSeq: bigint, fingerprint: string): string {
  return Buffer.from(JSON.stringify({ a: afterSeq.toString(), f: fingerprint })).toString('base64url');
}

function decodePageToken(token: string, fingerprint: string): bigint {
  try {
    const parsed = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as { a?: unknown; f?: unknown };
    if (typeof parsed.a !== 'string' || !/^\d+$/.test(parsed.a) || parsed.f !== fingerprint) throw new Error('mismatch');
    return BigInt(parsed.a);
  } catch {
    throw invalid('page_token', 'is not a token from a previous response with the same filters');
  }
}
