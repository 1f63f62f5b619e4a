/**
 * Lootbox sales windows as wall-clock rules in a time zone ("Friday 18:00 to Sunday 23:00",
 * "the 15th 00:00 to the end of the 17th"), turned into instants with the platform's own time
 * zone data (Intl), so DST changes move the instants and never the wall-clock edges.
 * A window is half-open: [opensAt, closesAt).
 */

export const weekdays = ['sunday', 'monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday'] as const;
export type Weekday = (typeof weekdays)[number];

/** `HH:MM`, 00:00–24:00 (24:00 is the end of the day). */
export type WallTime = string;

export type WindowRule =
  | { kind: 'weekly'; startDay: Weekday; startTime: WallTime; endDay: Weekday; endTime: WallTime }
  | { kind: 'monthly'; startDay: number; startTime: WallTime; endDay: number; endTime: WallTime };

export interface SaleWindow {
  opensAt: Date;
  closesAt: Date;
}

export interface WindowState extends SaleWindow {
  /** Whether `at` is inside [opensAt, closesAt); otherwise the window is the next one. */
  open: boolean;
}

const formatters = new Map<string, Intl.DateTimeFormat>();
function formatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formatters.set(timeZone, f);
  }
  return f;
}

interface WallClock {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
}

/** The wall clock in `timeZone` at `ms` (to the second). */
export function wallClockAt(ms: number, timeZone: string): WallClock {
  const parts: Record<string, number> = {};
  for (const p of formatter(timeZone).formatToParts(new Date(ms))) {
    if (p.type !== 'literal') parts[p.type] = Number(p.value);
  }
  return { year: parts.year!, month: parts.month!, day: parts.day!, hour: parts.hour!, minute: parts.minute!, second: parts.second! };
}

/** Local time minus UTC at instant `ms`, in milliseconds. */
function offsetMs(ms: number, timeZone: string): number {
  const w = wallClockAt(ms, timeZone);
  const seconds = Math.floor(ms / 1000) * 1000;
  return Date.UTC(w.year, w.month - 1, w.day, w.hour, w.minute, w.second) - seconds;
}

/**
 * The instant at which the wall clock in `timeZone` shows the given local time (day and hour
 * may overflow: hour 24 is the next day's 00:00). A time shown twice (clocks set back) is its
 * first occurrence; a time never shown (clocks set forward over it) is the moment the clocks
 * jump, the first instant after it.
 */
export function instantOfWallTime(year: number, month: number, day: number, hour: number, minute: number, timeZone: string): number {
  const wall = Date.UTC(year, month - 1, day, hour, minute);
  const offsets = [...new Set([offsetMs(wall - 14 * 3_600_000, timeZone), offsetMs(wall + 14 * 3_600_000, timeZone), offsetMs(wall, timeZone)])];
  const valid = offsets.map((o) => wall - o).filter((ms) => offsetMs(ms, timeZone) === wall - ms);
  if (valid.length > 0) return Math.min(...valid);
  // In a gap: between the candidates the offset changes once; find the first instant after it.
  const candidates = offsets.map((o) => wall - o).sort((a, b) => a - b);
  let lo = candidates[0]!;
  let hi = candidates[candidates.length - 1]!;
  const before = offsetMs(lo, timeZone);
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (offsetMs(mid, timeZone) === before) lo = mid;
    else hi = mid;
  }
  return hi;
}

function parseWallTime(time: WallTime): { hour: number; minute: number } {
  const m = /^(\d{2}):(\d{2})$/.exec(time);
  if (!m) throw new Error(`wall time "${time}" is not HH:MM`);
  return { hour: Number(m[1]), minute: Number(m[2]) };
}

/** Validates a rule's times and days; returns a problem, or null. */
export function ruleProblem(rule: WindowRule): string | null {
  for (const t of [rule.startTime, rule.endTime]) {
    const m = /^(\d{2}):(\d{2})$/.exec(t);
    if (!m) return `"${t}" is not HH:MM`;
    const h = Number(m[1]);
    const min = Number(m[2]);
    if (min > 59 || h > 24 || (h === 24 && min !== 0)) return `"${t}" is not a time of day (00:00–24:00)`;
  }
  if (rule.kind === 'monthly') {
    if (rule.endDay < rule.startDay || (rule.endDay === rule.startDay && rule.endTime <= rule.startTime)) {
      return 'a monthly window must end after it starts, within the month';
    }
  }
  return null;
}

/** The window containing `at`, or else the next one to open. */
export function windowAt(rule: WindowRule, at: Date, timeZone: string): WindowState {
  const ms = at.getTime();
  const local = wallClockAt(ms, timeZone);
  const start = parseWallTime(rule.startTime);
  const end = parseWallTime(rule.endTime);
  const windows: SaleWindow[] = [];
  if (rule.kind === 'weekly') {
    const startDow = weekdays.indexOf(rule.startDay);
    const endDow = weekdays.indexOf(rule.endDay);
    let spanDays = (endDow - startDow + 7) % 7;
    if (spanDays === 0 && end.hour * 60 + end.minute <= start.hour * 60 + start.minute) spanDays = 7;
    // Windows starting from 8 days before the local date to 7 days after cover `at` and the next.
    for (let k = -8; k <= 7; k += 1) {
      const day = new Date(Date.UTC(local.year, local.month - 1, local.day + k));
      if (day.getUTCDay() !== startDow) continue;
      const [y, m, d] = [day.getUTCFullYear(), day.getUTCMonth() + 1, day.getUTCDate()];
      windows.push({
        opensAt: new Date(instantOfWallTime(y, m, d, start.hour, start.minute, timeZone)),
        closesAt: new Date(instantOfWallTime(y, m, d + spanDays, end.hour, end.minute, timeZone)),
      });
    }
  } else {
    for (let k = -1; k <= 1; k += 1) {
      const first = new Date(Date.UTC(local.year, local.month - 1 + k, 1));
      const [y, m] = [first.getUTCFullYear(), first.getUTCMonth() + 1];
      windows.push({
        opensAt: new Date(instantOfWallTime(y, m, rule.startDay, start.hour, start.minute, timeZone)),
        closesAt: new Date(instantOfWallTime(y, m, rule.endDay, end.hour, end.minute, timeZone)),
      });
    }
  }
  const current = windows.find((w) => w.opensAt.getTime() <= ms && ms < w.closesAt.getTime());
  if (current) return { ...current, open: true };
  const next = windows.filter((w) => w.opensAt.getTime() > ms).sort((a, b) => a.opensAt.getTime() - b.opensAt.getTime())[0];
  if (!next) throw new Error('sale window: no window found near the given time (a bug)');
  return { ...next, open: false };
}
