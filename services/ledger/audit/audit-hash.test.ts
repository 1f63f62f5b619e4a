import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { entryHash, lotsToJson, type HashableEntry } from '../domain/canonical.js';
import type { LotState } from '../domain/ledger-state.js';
import { canonical, recomputeHash } from './audit-hash.js';
import type { JournalRow } from './journal-row.js';

// The audit's own encoder (audit-hash.ts) against the write path's (domain/canonical.ts): two
// implementations, one byte sequence, on generated entries with every column's edge cases
// (unicode, quotes, nulls, lots), in the forms each reads them in.

const int8 = fc.bigInt({ min: 0n, max: 2n ** 63n - 1n });
const text = fc.string({ unit: 'grapheme', maxLength: 12 });
const time = fc.date({ min: new Date('2000-01-01T00:00:00Z'), max: new Date('2099-12-31T23:59:59.999Z'), noInvalidDate: true });
const nullable = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: null });

const transfer = fc.record({
  kind: fc.constantFrom('POSTED', 'PENDING', 'POST_PENDING', 'VOID_PENDING'),
  debit: int8, credit: int8, amount: int8, unit: fc.constantFrom('CREDIT', 'USD', 'EUR'),
  pendingSeq: nullable(int8), pendingIdx: nullable(fc.integer({ min: 0, max: 300 })),
  dv: nullable(int8), db: nullable(int8), dh: nullable(int8), cv: nullable(int8), cb: nullable(int8), ch: nullable(int8),
});
const lot = fc.record({
  accountId: int8, userId: text, bucket: fc.constantFrom('SUBSCRIPTION', 'BONUS', 'PURCHASED') as fc.Arbitrary<LotState['bucket']>,
  grantedCredits: int8, effectiveAt: time, expiresAt: nullable(time), priority: fc.integer({ min: -1000, max: 1000 }), costBasisMicros: int8,
  currency: nullable(fc.constantFrom('USD', 'EUR')), deferredAccountId: nullable(int8), externalRef: nullable(text), entrySeq: int8,
  plan: nullable(text), periodStart: nullable(time), refundedMicros: int8, breakageMicros: int8, disputedMicros: int8, clawbackOwedCredits: int8, expirySwept: fc.boolean(), reversed: fc.boolean(), refundedSeq: nullable(int8),
});
const entry = fc.record({
  seq: int8, kind: fc.constantFrom('GRANT', 'CONSUME', 'REFUND'), userId: nullable(text), holdId: nullable(fc.uuid()), key: text,
  requestHash: fc.uint8Array({ minLength: 32, maxLength: 32 }), actor: text, recordedAt: time, effectiveAt: time, policy: nullable(text),
  allocation: nullable(fc.array(fc.record({ lot_id: int8.map(String), credits: int8.map(String) }), { maxLength: 3 })),
  metadata: fc.dictionary(text, text, { maxKeys: 5 }), result: fc.dictionary(fc.constantFrom('entry_id', 'lot_id', 'hold_id', 'x'), text),
  reversesSeq: nullable(int8), transfers: fc.array(transfer, { maxLength: 4 }), lots: nullable(fc.array(lot, { minLength: 1, maxLength: 2 })),
  prev: fc.uint8Array({ minLength: 32, maxLength: 32 }),
});

describe('audit hash', () => {
  it('recomputes exactly the hash the write path computes, for any entry (property)', () => {
    fc.assert(
      fc.property(entry, (e) => {
        const transfers = e.transfers.map((t, idx) => ({
          idx, kind: t.kind as 'POSTED', debitAccountId: t.debit, creditAccountId: t.credit, amount: t.amount, unit: t.unit,
          pendingSeq: t.pendingSeq, pendingIdx: t.pendingIdx, debitVersion: t.dv, debitBalanceAfter: t.db, debitHeldAfter: t.dh,
          creditVersion: t.cv, creditBalanceAfter: t.cb, creditHeldAfter: t.ch,
        }));
        const lots = e.lots === null ? null : lotsToJson(e.lots);
        const written: HashableEntry = {
          seq: e.seq, kind: e.kind, userId: e.userId, holdId: e.holdId, idempotencyKey: e.key, requestHash: Buffer.from(e.requestHash),
          actor: e.actor, recordedAt: e.recordedAt, effectiveAt: e.effectiveAt, policyVersion: e.policy, allocation: e.allocation,
          metadata: e.metadata, result: e.result, reversesSeq: e.reversesSeq, lots, transfers,
        };
        const hex = (v: bigint | null) => (v === null ? null : v.toString());
        // The same entry as the audit reads it: strings for int8, ISO text for times, hex for
        // bytes, jsonb parsed back (keys in another order).
        const reorder = (v: unknown): unknown => JSON.parse(JSON.stringify(v, (_k, x) => (x && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).reverse()) : x)));
        const read: JournalRow = {
          seq: e.seq.toString(), kind: e.kind, user_id: e.userId, hold_id: e.holdId, idempotency_key: e.key,
          request_hash: Buffer.from(e.requestHash).toString('hex'), actor: e.actor, recorded_at: e.recordedAt.toISOString(),
          effective_at: e.effectiveAt.toISOString(), policy_version: e.policy, allocation: reorder(e.allocation), metadata: reorder(e.metadata),
          result: reorder(e.result), lots: reorder(lots), reverses_seq: hex(e.reversesSeq), prev_hash: Buffer.from(e.prev).toString('hex'), hash: '',
          transfers: transfers.map((t) => ({
            idx: t.idx, kind: t.kind, debit_account_id: t.debitAccountId.toString(), credit_account_id: t.creditAccountId.toString(),
            amount: t.amount.toString(), unit: t.unit, pending_seq: hex(t.pendingSeq), pending_idx: t.pendingIdx, debit_version: hex(t.debitVersion),
            debit_balance_after: hex(t.debitBalanceAfter), debit_held_after: hex(t.debitHeldAfter), credit_version: hex(t.creditVersion),
            credit_balance_after: hex(t.creditBalanceAfter), credit_held_after: hex(t.creditHeldAfter),
          })),
        };
        expect(recomputeHash(read.prev_hash, read)).toBe(entryHash(Buffer.from(e.prev), written).toString('hex'));
      }),
      { numRuns: 300 },
    );
  });

  it('canonical JSON: sorted keys, no white space, refuses what JSON cannot carry exactly', () => {
    expect(canonical({ b: [1, 'x', null, true], a: { d: '"', c: 'é' } })).toBe('{"a":{"c":"é","d":"\\""},"b":[1,"x",null,true]}');
    expect(() => canonical(1.5)).toThrow(/safe integer/);
    expect(() => canonical(2 ** 60)).toThrow(/safe integer/);
  });
});
