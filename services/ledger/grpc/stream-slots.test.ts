import { describe, expect, it } from 'vitest';
import { LedgerError } from '../domain/errors.js';
import { StreamSlots } from './stream-slots.js';

describe('StreamSlots', () => {
  it('refuses the stream beyond the cap with RESOURCE_EXHAUSTED naming the limit, and frees slots when streams settle', async () => {
    const slots = new StreamSlots(2);
    const ends: (() => void)[] = [];
    const open = () => slots.run(() => new Promise<void>((resolve) => ends.push(resolve)));
    const first = open();
    const second = open();
    expect(slots.open).toBe(2);
    const refused = await open().catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(LedgerError);
    expect((refused as LedgerError).code).toBe('RESOURCE_EXHAUSTED');
    expect((refused as LedgerError).message).toMatch(/already serves 2 StreamJournal calls \(LEDGER_STREAMS_MAX\)/);
    expect(slots.open).toBe(2);
    ends[0]!();
    await first;
    expect(slots.open).toBe(1);
    const third = open();
    expect(slots.open).toBe(2);
    ends[1]!();
    ends[2]!();
    await Promise.all([second, third]);
    expect(slots.open).toBe(0);
  });

  it('frees the slot of a stream that failed', async () => {
    const slots = new StreamSlots(1);
    await expect(slots.run(() => Promise.reject(new Error('lost the database')))).rejects.toThrow('lost the database');
    expect(slots.open).toBe(0);
    await slots.run(async () => {});
  });

  it('refuses a cap below one', () => {
    expect(() => new StreamSlots(0)).toThrow(/positive integer/);
  });
});
