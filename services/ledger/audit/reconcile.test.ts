import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { split } from './margin.js';
import { reconcile, type ReconItem } from './reconcile.js';

// Reconciliation as a pure function over two lists (audit README, "reconcile"), and the exact
// split margin uses for an entry's upstream cost.

const item = (key: string, amountMicros: bigint, source: string, currency = 'USD'): ReconItem => ({ key, amountMicros, currency, source });

describe('reconcile', () => {
  it('matches equal items and reports each exception kind, both ways', () => {
    const r = reconcile(
      [
        item('purchase:cs_1', 10_000_000n, 'entry 1'),
        item('purchase:cs_2', 5_000_000n, 'entry 2'),
        item('renewal:in_1', 20_000_000n, 'entry 3'),
        item('refund:ch_1', 1_000_000n, 'entry 4', 'EUR'),
      ],
      [
        item('purchase:cs_1', 10_000_000n, 'event evt_1'),
        item('purchase:cs_2', 5_990_000n, 'event evt_2'),
        item('purchase:cs_9', 4_990_000n, 'event evt_9'),
        item('refund:ch_1', 1_000_000n, 'event evt_4', 'USD'),
      ],
    );
    expect(r.matched).toBe(1);
    expect(r.exceptions.map((e) => [e.kind, e.key, e.journalMicros, e.externalMicros])).toEqual([
      ['AMOUNT_MISMATCH', 'purchase:cs_2', 5_000_000n, 5_990_000n],
      ['CURRENCY_MISMATCH', 'refund:ch_1', 1_000_000n, 1_000_000n],
      ['MISSING_EXTERNALLY', 'renewal:in_1', 20_000_000n, null],
      ['MISSING_IN_JOURNAL', 'purchase:cs_9', null, 4_990_000n],
    ]);
    expect(r.exceptions[0]!.journalSources).toEqual(['entry 2']);
    expect(r.exceptions[0]!.externalSources).toEqual(['event evt_2']);
  });

  it('adds up items of one key (several refunds of one charge; an entry and its reversal)', () => {
    const r = reconcile(
      [item('refund:ch_1', 300n, 'entry 5'), item('refund:ch_1', 200n, 'entry 9'), item('purchase:cs_3', 700n, 'entry 6'), item('purchase:cs_3', -700n, 'entry 7')],
      [item('refund:ch_1', 500n, 'event evt_7')],
    );
    expect(r.exceptions).toEqual([]);
    expect(r.matched).toBe(1);
  });

  it('a free period on both sides matches whatever the currency; nothing on both sides is nothing', () => {
    expect(reconcile([item('renewal:in_0', 0n, 'entry 1', '')], [item('renewal:in_0', 0n, 'event e', 'USD')]).exceptions).toEqual([]);
    expect(reconcile([], []).exceptions).toEqual([]);
  });

  it('every item is matched or reported exactly once (property)', () => {
    const key = fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f');
    const items = fc.array(fc.record({ key, amount: fc.bigInt({ min: 1n, max: 1_000n }) }), { maxLength: 12 });
    fc.assert(
      fc.property(items, items, (j, x) => {
        const r = reconcile(j.map((i, n) => item(i.key, i.amount, `j${n}`)), x.map((i, n) => item(i.key, i.amount, `x${n}`)));
        const keys = new Set([...j, ...x].map((i) => i.key));
        expect(r.matched + r.exceptions.length).toBe(keys.size);
        expect(new Set(r.exceptions.map((e) => e.key)).size).toBe(r.exceptions.length);
      }),
    );
  });
});

describe('split', () => {
  it('splits exactly in proportion, the remainder to the largest fractions', () => {
    expect(split(100n, [['a', 1n], ['b', 1n], ['c', 1n]])).toEqual([['a', 34n], ['b', 33n], ['c', 33n]]);
    expect(split(-10n, [['a', 3n], ['b', 1n]])).toEqual([['a', -8n], ['b', -2n]]);
    expect(split(5n, [['a', 0n]])).toEqual([['a', 5n]]);
  });

  it('the parts always add up to the whole (property)', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: -(10n ** 15n), max: 10n ** 15n }), fc.array(fc.bigInt({ min: 1n, max: 10n ** 6n }), { minLength: 1, maxLength: 8 }), (amount, weights) => {
        const parts = split(amount, weights.map((w, i) => [String(i), w]));
        expect(parts.reduce((s, [, p]) => s + p, 0n)).toBe(amount);
      }),
    );
  });
});
