import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../lib/clock.js';
import { instantOfWallTime, wallClockAt, windowAt, type WindowRule } from './sale-window.js';

// The seed's lootbox windows: Weekend Flash Sale Friday 18:00 to Sunday 23:00, Mid-Month Mega
// Deal from the 15th 00:00 to the end of the 17th, in the sale time zone. Each edge is checked
// one millisecond either side, in zones and weeks where the clocks change, with a manual clock.

const weekend: WindowRule = { kind: 'weekly', startDay: 'friday', startTime: '18:00', endDay: 'sunday', endTime: '23:00' };
const midMonth: WindowRule = { kind: 'monthly', startDay: 15, startTime: '00:00', endDay: 17, endTime: '24:00' };

/** Asserts `rule` opens exactly at `opensAt` and closes exactly at `closesAt` (ISO, UTC). */
function expectEdges(rule: WindowRule, timeZone: string, opensAt: string, closesAt: string) {
  const clock = new ManualClock(opensAt);
  const open = new Date(opensAt).getTime();
  const close = new Date(closesAt).getTime();
  const at = () => windowAt(rule, clock.now(), timeZone);

  clock.set(new Date(open - 1));
  expect(at()).toEqual({ open: false, opensAt: new Date(open), closesAt: new Date(close) });
  clock.advance(1);
  expect(at()).toEqual({ open: true, opensAt: new Date(open), closesAt: new Date(close) });
  clock.set(new Date(close - 1));
  expect(at()).toEqual({ open: true, opensAt: new Date(open), closesAt: new Date(close) });
  clock.advance(1);
  const after = at();
  expect(after.open).toBe(false);
  expect(after.opensAt.getTime()).toBeGreaterThan(close);
}

describe('sale windows', () => {
  it('Weekend Flash Sale in UTC: Friday 18:00 to Sunday 23:00, then the next Friday', () => {
    expectEdges(weekend, 'UTC', '2026-11-27T18:00:00.000Z', '2026-11-29T23:00:00.000Z');
    expect(windowAt(weekend, new Date('2026-11-29T23:00:00.000Z'), 'UTC').opensAt).toEqual(new Date('2026-12-04T18:00:00.000Z'));
  });

  it('Weekend Flash Sale across the spring-forward weekend in Berlin (52 real hours)', () => {
    // 2027-03-28 02:00 CET → 03:00 CEST: Friday 18:00 CET = 17:00Z, Sunday 23:00 CEST = 21:00Z.
    expectEdges(weekend, 'Europe/Berlin', '2027-03-26T17:00:00.000Z', '2027-03-28T21:00:00.000Z');
  });

  it('Weekend Flash Sale across the fall-back weekend in New York (54 real hours)', () => {
    // 2026-11-01 02:00 EDT → 01:00 EST: Friday 18:00 EDT = 22:00Z, Sunday 23:00 EST = 04:00Z.
    expectEdges(weekend, 'America/New_York', '2026-10-30T22:00:00.000Z', '2026-11-02T04:00:00.000Z');
  });

  it('Mid-Month Mega Deal: the 15th 00:00 to the end of the 17th, in UTC and Tokyo', () => {
    expectEdges(midMonth, 'UTC', '2026-12-15T00:00:00.000Z', '2026-12-18T00:00:00.000Z');
    expectEdges(midMonth, 'Asia/Tokyo', '2026-12-14T15:00:00.000Z', '2026-12-17T15:00:00.000Z');
    // From the end of one window, the next opens the next month.
    expect(windowAt(midMonth, new Date('2026-12-18T00:00:00.000Z'), 'UTC').opensAt).toEqual(new Date('2027-01-15T00:00:00.000Z'));
    // Across the year end, and from just before a window in the month before.
    expect(windowAt(midMonth, new Date('2026-12-31T23:59:59.999Z'), 'UTC')).toMatchObject({ open: false, opensAt: new Date('2027-01-15T00:00:00.000Z') });
  });

  it('Mid-Month Mega Deal follows the offset of its own month (Berlin, March CET and April CEST)', () => {
    expectEdges(midMonth, 'Europe/Berlin', '2027-03-14T23:00:00.000Z', '2027-03-17T23:00:00.000Z');
    expectEdges(midMonth, 'Europe/Berlin', '2027-04-14T22:00:00.000Z', '2027-04-17T22:00:00.000Z');
  });

  it('a wall time skipped by the clocks is the moment they jump; a repeated one is its first occurrence', () => {
    // Santiago moves from 2026-09-06 00:00 straight to 01:00.
    const skipped = instantOfWallTime(2026, 9, 6, 0, 0, 'America/Santiago');
    expect(wallClockAt(skipped, 'America/Santiago')).toMatchObject({ day: 6, hour: 1, minute: 0 });
    expect(wallClockAt(skipped - 1, 'America/Santiago')).toMatchObject({ day: 5, hour: 23, minute: 59, second: 59 });
    // New York shows 01:30 twice on 2026-11-01: first at 05:30Z (EDT), again at 06:30Z (EST).
    expect(new Date(instantOfWallTime(2026, 11, 1, 1, 30, 'America/New_York')).toISOString()).toBe('2026-11-01T05:30:00.000Z');
  });
});
