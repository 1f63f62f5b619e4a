import type pg from 'pg';
import type { MoneyAccounts, PlatformAccounts } from '../domain/ledger-state.js';
import { creditUnit } from '../domain/types.js';

const creditCodes = {
  issued: 'platform.credits_issued',
  consumed: 'platform.credits_consumed',
  expired: 'platform.credits_expired',
  clawedBack: 'platform.credits_clawed_back',
} as const;

/** The money-side platform accounts, one set per currency: `<name>.<CURRENCY>`. */
const moneyNames: Record<keyof MoneyAccounts, string> = {
  clearing: 'stripe.clearing',
  recognized: 'revenue.recognized',
  breakage: 'revenue.breakage',
  refunds: 'refunds',
  upstreamCost: 'upstream.wavespeed.cost',
  upstreamPayable: 'upstream.wavespeed.payable',
};

/**
 * Creates the platform accounts for the configured currencies if they are missing and returns
 * every platform account's id, for every currency that has them. Runs once at start-up; batches then refer to the ids only.
 */
export async function ensurePlatformAccounts(pool: pg.Pool, currencies: readonly string[]): Promise<PlatformAccounts> {
  const codes: string[] = [];
  const units: string[] = [];
  for (const code of Object.values(creditCodes)) {
    codes.push(code);
    units.push(creditUnit);
  }
  for (const currency of currencies) {
    for (const name of Object.values(moneyNames)) {
      codes.push(`${name}.${currency}`);
      units.push(currency);
    }
  }
  // Inputs: parallel arrays of codes and units. No locks beyond the unique index on code;
  // concurrent start-ups both succeed. Output: none (the SELECT below reads the ids).
  await pool.query(
    `INSERT INTO accounts (code, unit, kind)
     SELECT code, unit, 'PLATFORM' FROM unnest($1::text[], $2::text[]) AS t(code, unit)
     ON CONFLICT (code) DO NOTHING`,
    [codes, units],
  );
  const { rows } = await pool.query<{ id: string; code: string; unit: string }>(
    `SELECT id::text, code, unit FROM accounts WHERE kind = 'PLATFORM'`,
  );
  const byCode = new Map(rows.map((r) => [r.code, BigInt(r.id)]));
  const id = (code: string): bigint => {
    const found = byCode.get(code);
    if (found === undefined) throw new Error(`platform account ${code} is missing`);
    return found;
  };
  const money = new Map<string, MoneyAccounts>();
  // Every currency that has platform accounts, not only the configured ones: lots bought in a
  // currency another process accepted must still be spendable and refundable here.
  // LEDGER_CURRENCIES decides which currencies new money amounts may use, nothing else.
  const known = new Set([...currencies, ...rows.filter((r) => r.unit !== creditUnit).map((r) => r.unit)]);
  for (const currency of known) {
    const entries = Object.entries(moneyNames).map(([key, name]) => [key, id(`${name}.${currency}`)]);
    money.set(currency, Object.fromEntries(entries) as MoneyAccounts);
  }
  return {
    issued: id(creditCodes.issued),
    consumed: id(creditCodes.consumed),
    expired: id(creditCodes.expired),
    clawedBack: id(creditCodes.clawedBack),
    money,
    all: new Map(rows.map((r) => [BigInt(r.id), { code: r.code, unit: r.unit }])),
  };
}
