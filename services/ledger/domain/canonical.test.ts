import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  canonicalJson,
  entryHash,
  entryHashBody,
  entryJsonColumns,
  genesisHash,
  hashEntryRecord,
  lotsToJson,
  requestHash,
  resultFromJson,
  resultToJson,
  sha256,
  type HashableEntry,
  type HashableTransfer,
} from './canonical.js';
import type { LotState } from './ledger-state.js';
import type { EntryRecord, TransferRecord } from './types.js';

/** Unit tests of canonical JSON and the entry hash (ledger README §4): pure functions, no database. */

/** The same object with its keys (recursively) in reverse insertion order. */
function reversedKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(reversedKeys);
  if (value === null || typeof value !== 'object' || value instanceof Date || Buffer.isBuffer(value)) return value;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(value).reverse()) out[key] = reversedKeys((value as Record<string, unknown>)[key]);
  return out;
}

describe('canonicalJson', () => {
  it('sorts keys, recursively, whatever their insertion order', () => {
    const a = { b: 1, a: { y: [1, { d: 'x', c: true }], x: null } };
    const b = { a: { x: null, y: [1, { c: true, d: 'x' }] }, b: 1 };
    expect(canonicalJson(a)).toBe('{"a":{"x":null,"y":[1,{"c":true,"d":"x"}]},"b":1}');
    expect(canonicalJson(b)).toBe(canonicalJson(a));
  });

  it('is key-order independent for any JSON-like value (property)', () => {
    const value = fc.letrec((tie) => ({
      leaf: fc.oneof(
        fc.string(),
        fc.integer(),
        fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }),
        fc.boolean(),
        fc.constant(null),
      ),
      node: fc.oneof(
        { depthSize: 'small' },
        tie('leaf'),
        fc.array(tie('node'), { maxLength: 4 }),
        fc.dictionary(fc.string({ maxLength: 6 }), tie('node'), { maxKeys: 5 }),
      ),
    })).node;
    fc.assert(
      fc.property(value, (v) => {
        expect(canonicalJson(reversedKeys(v))).toBe(canonicalJson(v));
        // And it is valid JSON.
        expect(() => JSON.parse(canonicalJson(v))).not.toThrow();
      }),
      { numRuns: 300 },
    );
  });

  it('encodes a bigint exactly like its decimal string', () => {
    for (const n of [0n, 1n, -1n, 599_980n, 2n ** 63n - 1n, -(2n ** 63n), 10n ** 30n]) {
      expect(canonicalJson(n)).toBe(canonicalJson(n.toString()));
      expect(canonicalJson({ amount: n })).toBe(canonicalJson({ amount: n.toString() }));
    }
    expect(canonicalJson(2n ** 64n)).toBe('"18446744073709551616"');
  });

  it('encodes Date as ISO-8601, Buffer as lowercase hex, and drops undefined properties', () => {
    const d = new Date('2026-11-24T12:00:00.123Z');
    expect(canonicalJson(d)).toBe(canonicalJson('2026-11-24T12:00:00.123Z'));
    expect(canonicalJson(Buffer.from([0xab, 0x01]))).toBe('"ab01"');
    expect(canonicalJson({ a: 1, b: undefined })).toBe('{"a":1}');
    expect(canonicalJson(undefined)).toBe('null');
    expect(canonicalJson('é"\\')).toBe(JSON.stringify('é"\\'));
  });

  it('keeps distinct values distinct', () => {
    expect(canonicalJson(1)).not.toBe(canonicalJson('1'));
    expect(canonicalJson(null)).not.toBe(canonicalJson('null'));
    expect(canonicalJson(true)).not.toBe(canonicalJson('true'));
    expect(canonicalJson([1, 2])).not.toBe(canonicalJson([2, 1]));
    expect(canonicalJson({ a: 'b' })).not.toBe(canonicalJson({ b: 'a' }));
  });

  it('refuses numbers that are not safe integers, and values it cannot encode', () => {
    expect(() => canonicalJson(1.5)).toThrow();
    expect(() => canonicalJson(2 ** 53)).toThrow();
    expect(() => canonicalJson(Number.NaN)).toThrow();
    expect(() => canonicalJson(() => 1)).toThrow();
    expect(() => canonicalJson(Symbol('x'))).toThrow();
  });
});

const transfer: HashableTransfer = {
  idx: 0,
  kind: 'POST_PENDING',
  debitAccountId: 101n,
  creditAccountId: 2n,
  amount: 60n,
  unit: 'CREDIT',
  pendingSeq: 4n,
  pendingIdx: 0,
  debitVersion: 3n,
  debitBalanceAfter: 440n,
  debitHeldAfter: 0n,
  creditVersion: null,
  creditBalanceAfter: null,
  creditHeldAfter: null,
};

const entry: HashableEntry = {
  seq: 5n,
  kind: 'CAPTURE',
  userId: 'u1',
  holdId: '0b7e1c2a-5d1f-4c3b-9a8e-1234567890ab',
  idempotencyKey: 'cap1',
  requestHash: sha256('request'),
  actor: 'worker-svc',
  recordedAt: new Date('2026-11-24T12:00:00.000Z'),
  effectiveAt: new Date('2026-11-24T12:00:00.000Z'),
  policyVersion: 'drawdown-v1',
  allocation: [{ lot_id: '101', credits: '60' }],
  metadata: { 'upstream.request_id': 'pred_1', job: 'j1' },
  result: { entry_id: '5', captured_credits: '60', released_credits: '40' },
  reversesSeq: null,
  transfers: [transfer, { ...transfer, idx: 1, kind: 'VOID_PENDING', amount: 40n, debitBalanceAfter: 440n }],
};

const prev = sha256('previous entry');

/** The same entry as PostgreSQL returns it: int8 as strings, jsonb with keys in another order. */
function asReadFromDatabase(e: HashableEntry): HashableEntry {
  const s = (v: bigint | string | null) => (v === null ? null : v.toString());
  return {
    ...e,
    seq: e.seq.toString(),
    reversesSeq: e.reversesSeq === null ? null : e.reversesSeq.toString(),
    metadata: reversedKeys(e.metadata),
    result: reversedKeys(e.result),
    allocation: reversedKeys(e.allocation),
    transfers: e.transfers.map((t) => ({
      ...t,
      debitAccountId: t.debitAccountId.toString(),
      creditAccountId: t.creditAccountId.toString(),
      amount: t.amount.toString(),
      pendingSeq: s(t.pendingSeq),
      debitVersion: s(t.debitVersion),
      debitBalanceAfter: s(t.debitBalanceAfter),
      debitHeldAfter: s(t.debitHeldAfter),
      creditVersion: s(t.creditVersion),
      creditBalanceAfter: s(t.creditBalanceAfter),
      creditHeldAfter: s(t.creditHeldAfter),
    })),
  };
}

/** A changed value of the same type for each field. */
function changed(value: unknown): unknown {
  if (value === null) return 'x';
  if (typeof value === 'bigint') return value + 1n;
  if (typeof value === 'number') return value + 1;
  if (typeof value === 'string') return `${value}x`;
  if (value instanceof Date) return new Date(value.getTime() + 1);
  if (Buffer.isBuffer(value)) {
    const b = Buffer.from(value);
    b[0] = b[0]! ^ 1;
    return b;
  }
  throw new Error(`no change for ${String(value)}`);
}

describe('entryHash', () => {
  const base = entryHash(prev, entry);

  it('is a 32-byte sha256 and deterministic', () => {
    expect(base).toHaveLength(32);
    expect(entryHash(prev, entry).equals(base)).toBe(true);
    const copy: HashableEntry = {
      ...entry,
      requestHash: Buffer.from(entry.requestHash),
      recordedAt: new Date(entry.recordedAt),
      metadata: { ...(entry.metadata as object) },
      transfers: entry.transfers.map((t) => ({ ...t })),
    };
    expect(entryHash(Buffer.from(prev), copy).equals(base)).toBe(true);
  });

  it('is the same for the entry as read back from the database (strings, reordered jsonb)', () => {
    expect(entryHash(prev, asReadFromDatabase(entry)).equals(base)).toBe(true);
  });

  it('changes with the previous hash', () => {
    expect(entryHash(genesisHash, entry).equals(base)).toBe(false);
    expect(entryHash(changed(prev) as Buffer, entry).equals(base)).toBe(false);
  });

  it.each(Object.keys(entry).filter((k) => !['allocation', 'metadata', 'result', 'transfers'].includes(k)))(
    'changes when the entry field %s changes',
    (key) => {
      const modified = { ...entry, [key]: changed(entry[key as keyof HashableEntry]) } as HashableEntry;
      expect(entryHash(prev, modified).equals(base)).toBe(false);
      // null ↔ value changes are caught too.
      if (entry[key as keyof HashableEntry] !== null && ['userId', 'holdId', 'policyVersion'].includes(key)) {
        expect(entryHash(prev, { ...entry, [key]: null } as HashableEntry).equals(base)).toBe(false);
      }
      if (key === 'reversesSeq') {
        const reversal = entryHash(prev, { ...entry, reversesSeq: 3n });
        expect(reversal.equals(base)).toBe(false);
        expect(entryHash(prev, { ...entry, reversesSeq: '3' }).equals(reversal)).toBe(true);
        expect(entryHash(prev, { ...entry, reversesSeq: 4n }).equals(reversal)).toBe(false);
      }
    },
  );

  it('changes when the allocation, metadata or result change', () => {
    const variants: Partial<HashableEntry>[] = [
      { allocation: [{ lot_id: '101', credits: '61' }] },
      { allocation: [{ lot_id: '102', credits: '60' }] },
      { allocation: null },
      { metadata: { ...(entry.metadata as object), job: 'j2' } },
      { metadata: { ...(entry.metadata as object), extra: '' } },
      { metadata: {} },
      { result: { ...(entry.result as object), released_credits: '41' } },
      { result: { ...(entry.result as object), entry_id: '6' } },
    ];
    for (const v of variants) expect(entryHash(prev, { ...entry, ...v }).equals(base)).toBe(false);
  });

  it.each(Object.keys(transfer))('changes when the transfer field %s changes', (key) => {
    for (const i of [0, 1]) {
      const transfers = entry.transfers.map((t, j) =>
        j === i ? ({ ...t, [key]: changed(t[key as keyof HashableTransfer]) } as HashableTransfer) : t,
      );
      expect(entryHash(prev, { ...entry, transfers }).equals(base)).toBe(false);
    }
  });

  it('changes when transfers are added, removed or reordered', () => {
    const [t0, t1] = entry.transfers;
    expect(entryHash(prev, { ...entry, transfers: [t0!] }).equals(base)).toBe(false);
    expect(entryHash(prev, { ...entry, transfers: [t1!, t0!] }).equals(base)).toBe(false);
    expect(entryHash(prev, { ...entry, transfers: [t0!, t1!, t1!] }).equals(base)).toBe(false);
  });

  it('hashEntryRecord agrees with entryHash on the stored forms of allocation and result', () => {
    const posted: TransferRecord = {
      idx: 0,
      kind: 'POSTED',
      debitAccountId: 101n,
      creditAccountId: 2n,
      amount: 15n,
      unit: 'CREDIT',
      pendingSeq: null,
      pendingIdx: null,
      debitVersion: 3n,
      debitBalanceAfter: 85n,
      debitHeldAfter: 0n,
      creditVersion: null,
      creditBalanceAfter: null,
      creditHeldAfter: null,
    };
    // As LedgerState.post builds it: the jsonb columns' text follows the record's fields.
    const rec = (r: Omit<EntryRecord, 'json'>): EntryRecord => ({ ...r, json: entryJsonColumns(r) });
    const record: EntryRecord = rec({
      seq: 7n,
      kind: 'CONSUME',
      userId: 'u1',
      holdId: null,
      idempotencyKey: 'c1',
      requestHash: sha256('r'),
      actor: 'worker-svc',
      recordedAt: new Date('2026-11-24T12:00:00.000Z'),
      effectiveAt: new Date('2026-11-24T12:00:00.000Z'),
      policyVersion: 'drawdown-v1',
      allocation: [{ lotId: 101n, credits: 15n }],
      metadata: { job: 'j' },
      result: { entryId: 7n, replayed: false, allocation: [{ lotId: 101n, credits: 15n }] },
      prevHash: prev,
      hash: Buffer.alloc(0),
      reversesSeq: null,
      transfers: [posted],
    });
    const stored = asReadFromDatabase({
      ...record,
      allocation: [{ lot_id: '101', credits: '15' }],
      result: { entry_id: '7', allocation: [{ lot_id: '101', credits: '15' }] },
    });
    expect(hashEntryRecord(record).equals(entryHash(prev, stored))).toBe(true);
    // The replayed flag is not part of what is stored, so it cannot change the hash.
    expect(hashEntryRecord(rec({ ...record, result: { ...record.result, replayed: true } })).equals(hashEntryRecord(record))).toBe(
      true,
    );
    expect(
      hashEntryRecord(rec({ ...record, allocation: [{ lotId: 101n, credits: 16n }] })).equals(hashEntryRecord(record)),
    ).toBe(false);
  });
});

describe('requestHash', () => {
  const command = { kind: 'CONSUME', idempotencyKey: 'k1', userId: 'u1', credits: 15n, upstream: null, metadata: { a: '1', b: '2' } };

  it('ignores the idempotency key and the key order', () => {
    expect(requestHash({ ...command, idempotencyKey: 'other' }).equals(requestHash(command))).toBe(true);
    expect(requestHash(reversedKeys(command) as object).equals(requestHash(command))).toBe(true);
  });

  it('changes when any other field changes', () => {
    const base = requestHash(command);
    expect(requestHash({ ...command, credits: 16n }).equals(base)).toBe(false);
    expect(requestHash({ ...command, userId: 'u2' }).equals(base)).toBe(false);
    expect(requestHash({ ...command, kind: 'RESERVE' }).equals(base)).toBe(false);
    expect(requestHash({ ...command, metadata: { a: '1' } }).equals(base)).toBe(false);
    expect(
      requestHash({ ...command, upstream: { amountMicros: 0n, currency: 'USD', requestId: '', model: '' } }).equals(base),
    ).toBe(false);
  });
});

describe('resultToJson / resultFromJson', () => {
  it('round-trip every field through JSON text', () => {
    const result = {
      entryId: 12n,
      replayed: false,
      lotId: 101n,
      holdId: '0b7e1c2a-5d1f-4c3b-9a8e-1234567890ab',
      expiresAt: new Date('2026-11-24T12:01:00.000Z'),
      allocation: [
        { lotId: 101n, credits: 3n },
        { lotId: 102n, credits: 2n ** 40n },
      ],
      capturedCredits: 5n,
      releasedCredits: 0n,
      expiredCredits: 3n,
      clawedBackCredits: 4n,
      shortfallCredits: 1n,
      refundedMicrosTotal: 2n ** 62n,
    };
    const back = resultFromJson(JSON.parse(JSON.stringify(resultToJson(result))), true);
    expect(back).toEqual({ ...result, replayed: true });
  });
});

describe('entryHash fast path', () => {
  it('hashes exactly the canonical JSON of the documented body, for entries with and without nulls', () => {
    const entries: HashableEntry[] = [
      {
        seq: 7n, kind: 'CAPTURE', userId: 'u"1', holdId: '0b3f1f5e-7a0e-4c55-9d51-1c1f2a3b4c5d', idempotencyKey: 'k\\1',
        requestHash: Buffer.alloc(32, 3), actor: 'worker', recordedAt: new Date('2026-11-24T01:02:03.004Z'),
        effectiveAt: new Date('2026-11-24T01:02:03.004Z'), policyVersion: 'drawdown-v1',
        allocation: [{ lot_id: '5', credits: '2' }], metadata: { z: 'ü', a: 'x' },
        result: { entry_id: '7', allocation: [{ credits: '2', lot_id: '5' }] }, reversesSeq: null,
        transfers: [
          { idx: 0, kind: 'POST_PENDING', debitAccountId: 5n, creditAccountId: '2', amount: 2n, unit: 'CREDIT', pendingSeq: '6', pendingIdx: 0,
            debitVersion: 3n, debitBalanceAfter: 8n, debitHeldAfter: 0n, creditVersion: null, creditBalanceAfter: null, creditHeldAfter: null },
          { idx: 1, kind: 'POSTED', debitAccountId: '9', creditAccountId: 4n, amount: '599980', unit: 'USD', pendingSeq: null, pendingIdx: null,
            debitVersion: '2', debitBalanceAfter: '1', debitHeldAfter: '0', creditVersion: null, creditBalanceAfter: null, creditHeldAfter: null },
        ],
      },
      {
        seq: '1', kind: 'GRANT', userId: null, holdId: null, idempotencyKey: 'g', requestHash: Buffer.alloc(32), actor: 'admin',
        recordedAt: new Date(0), effectiveAt: new Date(0), policyVersion: null, allocation: null, metadata: {}, result: {},
        reversesSeq: '3', transfers: [],
      },
    ];
    for (const entry of entries) {
      const prev = Buffer.alloc(32, 9);
      const expected = createHash('sha256').update(prev).update(canonicalJson(entryHashBody(entry))).digest();
      expect(entryHash(prev, entry).toString('hex')).toBe(expected.toString('hex'));
    }
  });
});

describe('entryHash with journaled lots', () => {
  const capture: HashableEntry = {
    seq: 7n, kind: 'CAPTURE', userId: 'u"1', holdId: '0b3f1f5e-7a0e-4c55-9d51-1c1f2a3b4c5d', idempotencyKey: 'k\\1',
    requestHash: Buffer.alloc(32, 3), actor: 'worker', recordedAt: new Date('2026-11-24T01:02:03.004Z'),
    effectiveAt: new Date('2026-11-24T01:02:03.004Z'), policyVersion: 'drawdown-v1',
    allocation: [{ lot_id: '5', credits: '2' }], metadata: { z: 'ü', a: 'x' },
    result: { entry_id: '7', allocation: [{ credits: '2', lot_id: '5' }] }, reversesSeq: null,
    transfers: [
      { idx: 0, kind: 'POST_PENDING', debitAccountId: 5n, creditAccountId: '2', amount: 2n, unit: 'CREDIT', pendingSeq: '6', pendingIdx: 0,
        debitVersion: 3n, debitBalanceAfter: 8n, debitHeldAfter: 0n, creditVersion: null, creditBalanceAfter: null, creditHeldAfter: null },
    ],
  };
  const grant: HashableEntry = {
    seq: '1', kind: 'GRANT', userId: null, holdId: null, idempotencyKey: 'g', requestHash: Buffer.alloc(32), actor: 'admin',
    recordedAt: new Date(0), effectiveAt: new Date(0), policyVersion: null, allocation: null, metadata: {}, result: {},
    reversesSeq: '3', transfers: [],
  };
  const lot: LotState = {
    accountId: 5n, userId: 'u1', bucket: 'BONUS', grantedCredits: 10n, effectiveAt: new Date(0),
    expiresAt: new Date('2027-01-01T00:00:00.000Z'), priority: 2, costBasisMicros: 0n, currency: null,
    deferredAccountId: null, externalRef: null, entrySeq: 1n, plan: null, periodStart: null, refundedMicros: 0n,
    disputedMicros: 0n, clawbackOwedCredits: 0n,
    breakageMicros: 0n, expirySwept: false, reversed: false, refundedSeq: null,
  };

  it('is byte-for-byte what it was before lots were journaled, for entries without lots (pinned hashes)', () => {
    // Computed with the hash function as it was before the `lots` key existed.
    const prev = Buffer.alloc(32, 9);
    expect(entryHash(prev, capture).toString('hex')).toBe('6600af7eba2a41073fab14480a97a2b12909b6e19abdf77beb767b78d011f7db');
    expect(entryHash(prev, grant).toString('hex')).toBe('e94f9d8969fbf68820f06846bb2b05d826a9ce3b5b1934e5446fd87dcb8b8c7a');
    expect(entryHash(prev, { ...grant, lots: null }).toString('hex')).toBe(
      'e94f9d8969fbf68820f06846bb2b05d826a9ce3b5b1934e5446fd87dcb8b8c7a',
    );
  });

  it('covers every lot term: changing bucket, effective_at, expires_at, priority or cost basis changes the hash', () => {
    const prev = Buffer.alloc(32, 9);
    const withLots = (l: LotState) => ({ ...grant, lots: lotsToJson([l]) });
    const base = entryHash(prev, withLots(lot));
    expect(base.equals(entryHash(prev, grant))).toBe(false);
    for (const change of [
      { bucket: 'PURCHASED' as const },
      { effectiveAt: new Date(1) },
      { expiresAt: null },
      { priority: 3 },
      { costBasisMicros: 1n },
      { externalRef: 'pi_1' },
      { refundedMicros: 1n },
      { expirySwept: true },
    ]) {
      expect(entryHash(prev, withLots({ ...lot, ...change })).equals(base), JSON.stringify(Object.keys(change))).toBe(false);
    }
    // The fast path agrees with canonical JSON of the documented body, lots included.
    const expected = createHash('sha256').update(prev).update(canonicalJson(entryHashBody(withLots(lot)))).digest();
    expect(base.toString('hex')).toBe(expected.toString('hex'));
  });

  it('hashEntryRecord covers the lots column it writes, as read back from the database', () => {
    const json = entryJsonColumns({ allocation: null, metadata: {}, result: { entryId: 1n, replayed: false }, lots: [lot] });
    expect(json.lots).not.toBeNull();
    const viaText = entryHash(Buffer.alloc(32), { ...grant, result: JSON.parse(json.result), lots: JSON.parse(json.lots!) });
    const direct = entryHash(Buffer.alloc(32), { ...grant, result: JSON.parse(json.result), lots: lotsToJson([lot]) });
    expect(viaText.equals(direct)).toBe(true);
  });
});
