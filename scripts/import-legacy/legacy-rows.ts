import { limits } from '../../services/ledger/client/index.js';
import { parseCsv, type CsvRecord } from './csv.js';

/**
 * The old product's export, validated as a whole before anything is imported: a bad row is
 * reported with its file and line, and then nothing is posted.
 *
 * user_credits.csv columns:
 *   user_id, current_balance, purchased_credits_balance, subscription_credits_balance,
 *   subscription_plan, subscription_period_start, subscription_period_end
 * user_credit_purchases.csv columns:
 *   id, user_id, credits, amount_cents, currency, stripe_session_id, status, created_at
 *
 * current_balance is all the user's credits; purchased and subscription are parts of it and
 * the rest (lootbox and promotional credits) becomes a BONUS lot.
 */
export const userColumns = [
  'user_id',
  'current_balance',
  'purchased_credits_balance',
  'subscription_credits_balance',
  'subscription_plan',
  'subscription_period_start',
  'subscription_period_end',
] as const;

export const purchaseColumns = [
  'id',
  'user_id',
  'credits',
  'amount_cents',
  'currency',
  'stripe_session_id',
  'status',
  'created_at',
] as const;

export interface LegacyUser {
  line: number;
  userId: string;
  current: bigint;
  purchased: bigint;
  subscription: bigint;
  plan: string;
  periodStart: Date | null;
  periodEnd: Date | null;
}

export interface LegacyPurchase {
  line: number;
  id: string;
  userId: string;
  credits: bigint;
  amountCents: bigint;
  currency: string;
  stripeSessionId: string;
  status: string;
  createdAt: Date;
}

export interface LegacyExport {
  users: LegacyUser[];
  purchases: LegacyPurchase[];
}

export class LegacyValidationError extends Error {
  constructor(readonly problems: string[]) {
    super(`legacy export rejected, nothing imported:\n  ${problems.join('\n  ')}`);
  }
}

/** Row bound: an export larger than this is refused rather than read into memory. */
export const rowsMax = 2_000_000;

const integerPattern = /^(0|[1-9][0-9]{0,17})$/;
const idPattern = /^[\x21-\x7e]{1,128}$/;

/** What the target ledger accepts, so that an export that validates also imports whole. */
export interface ImportLimits {
  currencies: ReadonlySet<string>;
}

/** The ledger's default LEDGER_CURRENCIES. */
export const defaultTarget: ImportLimits = { currencies: new Set(['USD', 'EUR', 'GBP']) };

export function parseLegacyExport(usersCsv: string, purchasesCsv: string, target: ImportLimits = defaultTarget): LegacyExport {
  const problems: string[] = [];
  const users = readTable<LegacyUser>('user_credits.csv', usersCsv, userColumns, problems, (row, at) => {
    const userId = id(row.user_id, at('user_id'));
    const current = count(row.current_balance, at('current_balance'));
    const purchased = count(row.purchased_credits_balance, at('purchased_credits_balance'));
    const subscription = count(row.subscription_credits_balance, at('subscription_credits_balance'));
    const periodStart = optionalTime(row.subscription_period_start, at('subscription_period_start'));
    const periodEnd = optionalTime(row.subscription_period_end, at('subscription_period_end'));
    if (purchased + subscription > current) {
      throw new Error(`${at('current_balance')}: ${current} is less than purchased ${purchased} + subscription ${subscription}`);
    }
    if (subscription > 0n && periodEnd === null) {
      throw new Error(`${at('subscription_period_end')}: required when subscription_credits_balance > 0`);
    }
    if (subscription > 0n && periodStart === null) {
      throw new Error(`${at('subscription_period_start')}: required when subscription_credits_balance > 0`);
    }
    if (periodStart && periodEnd && periodEnd <= periodStart) {
      throw new Error(`${at('subscription_period_end')}: must be after subscription_period_start`);
    }
    // Plan names are display text: runs of white space (a name wrapped over two lines in the
    // export) become one space, as the ledger accepts no control characters.
    const plan = (row.subscription_plan ?? '').replace(/\s+/g, ' ').trim();
    if ([...plan].length > 64) throw new Error(`${at('subscription_plan')}: longer than 64 characters`);
    return { userId, current, purchased, subscription, plan, periodStart, periodEnd };
  });
  const purchases = readTable<LegacyPurchase>('user_credit_purchases.csv', purchasesCsv, purchaseColumns, problems, (row, at) => {
    const currency = (row.currency ?? '').toUpperCase();
    if (!target.currencies.has(currency)) {
      throw new Error(`${at('currency')}: "${row.currency}" is not one of the ledger's currencies (${[...target.currencies].join(', ')})`);
    }
    const credits = count(row.credits, at('credits'));
    if (credits === 0n) throw new Error(`${at('credits')}: must be positive`);
    const createdAt = optionalTime(row.created_at, at('created_at'));
    if (createdAt === null) throw new Error(`${at('created_at')}: is required`);
    return {
      id: id(row.id, at('id')),
      userId: id(row.user_id, at('user_id')),
      credits,
      amountCents: count(row.amount_cents, at('amount_cents')),
      currency,
      stripeSessionId: row.stripe_session_id ?? '',
      status: row.status ?? '',
      createdAt,
    };
  });

  const seen = new Map<string, number>();
  for (const u of users) {
    const first = seen.get(u.userId);
    if (first !== undefined) problems.push(`user_credits.csv line ${u.line}: user_id "${u.userId}" repeats line ${first}`);
    else seen.set(u.userId, u.line);
  }
  const purchaseIds = new Map<string, number>();
  const currencies = new Map<string, string>();
  for (const p of purchases) {
    const first = purchaseIds.get(p.id);
    if (first !== undefined) problems.push(`user_credit_purchases.csv line ${p.line}: id "${p.id}" repeats line ${first}`);
    else purchaseIds.set(p.id, p.line);
    if (!seen.has(p.userId)) {
      problems.push(`user_credit_purchases.csv line ${p.line}: user_id "${p.userId}" is not in user_credits.csv`);
    }
    if (p.status !== 'completed') continue;
    const currency = currencies.get(p.userId);
    if (currency !== undefined && currency !== p.currency) {
      problems.push(`user_credit_purchases.csv line ${p.line}: user "${p.userId}" paid in ${currency} and ${p.currency}; one currency per user`);
    }
    currencies.set(p.userId, p.currency);
  }
  if (problems.length > 0) throw new LegacyValidationError(problems);
  return { users, purchases };
}

function readTable<T extends { line: number }>(
  file: string,
  text: string,
  columns: readonly string[],
  problems: string[],
  parse: (row: Record<string, string>, at: (column: string) => string) => Omit<T, 'line'>,
): T[] {
  let records: CsvRecord[];
  try {
    records = parseCsv(text);
  } catch (error) {
    problems.push(`${file}: ${(error as Error).message}`);
    return [];
  }
  const [header, ...rows] = records;
  if (!header) {
    problems.push(`${file}: empty file (a header line is required)`);
    return [];
  }
  const missing = columns.filter((c) => !header.fields.includes(c));
  if (missing.length > 0) {
    problems.push(`${file} line ${header.line}: missing columns ${missing.join(', ')}`);
    return [];
  }
  if (rows.length > rowsMax) {
    problems.push(`${file}: ${rows.length} rows; at most ${rowsMax}`);
    return [];
  }
  const out: T[] = [];
  for (const record of rows) {
    const at = (column: string) => `${file} line ${record.line}, ${column}`;
    if (record.fields.length !== header.fields.length) {
      problems.push(`${file} line ${record.line}: ${record.fields.length} fields, the header has ${header.fields.length}`);
      continue;
    }
    const row = Object.fromEntries(header.fields.map((name, i) => [name, record.fields[i]!.trim()]));
    try {
      out.push({ ...parse(row, at), line: record.line } as T);
    } catch (error) {
      problems.push((error as Error).message);
    }
  }
  return out;
}

function id(value: string | undefined, where: string): string {
  if (value === undefined || !idPattern.test(value)) {
    throw new Error(`${where}: "${value ?? ''}" must be 1–128 printable characters without spaces`);
  }
  return value;
}

function count(value: string | undefined, where: string): bigint {
  if (value === undefined || !integerPattern.test(value)) {
    throw new Error(`${where}: "${value ?? ''}" is not a whole number ≥ 0`);
  }
  const n = BigInt(value);
  // One bound for credits and cents alike: the ledger's per-command credit limit.
  if (n > limits.creditsMax) throw new Error(`${where}: ${n} is above the ledger's limit of ${limits.creditsMax}`);
  return n;
}

function optionalTime(value: string | undefined, where: string): Date | null {
  if (value === undefined || value === '') return null;
  const time = new Date(value);
  if (!/^\d{4}-\d{2}-\d{2}/.test(value) || Number.isNaN(time.getTime())) {
    throw new Error(`${where}: "${value}" is not an ISO-8601 time`);
  }
  return time;
}
