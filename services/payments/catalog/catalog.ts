import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { drawCredits, seedCommitment, windowSeed } from './fair-draw.js';
import { ruleProblem, weekdays, windowAt, type WindowRule, type WindowState } from './sale-window.js';

/**
 * The catalog: packages (always on sale: the seed's pay-per-use migration), lootboxes (on sale
 * inside their windows only, in SALE_TIME_ZONE) and subscription plans. A JSON file validated
 * with zod; `default-catalog.json` ships. Prices are in the currency's minor unit (cents), as
 * Stripe takes them; credits are whole.
 */

const id = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[a-z0-9][a-z0-9-]*$/, 'lower-case letters, digits and dashes');
const name = z
  .string()
  .min(1)
  .max(80)
  .refine((s) => !/\p{Cc}/u.test(s), 'no control characters');
const cents = z.number().int().positive().max(100_000_000);
const credits = z.number().int().positive().max(1_000_000_000);
const wallTime = z.string().regex(/^\d{2}:\d{2}$/, 'HH:MM');

const windowRule = z
  .discriminatedUnion('kind', [
    z.object({ kind: z.literal('weekly'), startDay: z.enum(weekdays), startTime: wallTime, endDay: z.enum(weekdays), endTime: wallTime }).strict(),
    z
      .object({
        kind: z.literal('monthly'),
        startDay: z.number().int().min(1).max(28),
        startTime: wallTime,
        endDay: z.number().int().min(1).max(28),
        endTime: wallTime,
      })
      .strict(),
  ])
  .superRefine((rule, ctx) => {
    const problem = ruleProblem(rule);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });

export const catalogFileSchema = z
  .object({
    currency: z.string().regex(/^[a-z]{3}$/, 'a lower-case ISO 4217 code, as Stripe writes it'),
    packages: z
      .array(z.object({ id, name, credits, priceCents: cents }).strict())
      .min(1)
      .max(50),
    lootboxes: z
      .array(
        z
          .object({
            id,
            name,
            priceCents: cents,
            /** A fixed amount, or a range drawn provably fairly per Checkout Session. */
            credits: z.union([credits, z.object({ min: credits, max: credits }).strict().refine((r) => r.min <= r.max, 'min must not exceed max')]),
            window: windowRule,
          })
          .strict(),
      )
      .max(20),
    plans: z
      .array(z.object({ id, name, monthlyCredits: credits, priceCents: cents }).strict())
      .max(20),
  })
  .strict()
  .superRefine((c, ctx) => {
    const seen = new Set<string>();
    for (const item of [...c.packages, ...c.lootboxes, ...c.plans]) {
      if (seen.has(item.id)) ctx.addIssue({ code: 'custom', message: `id "${item.id}" is used twice (ids are unique across packages, lootboxes and plans)` });
      seen.add(item.id);
    }
  });

export type CatalogFile = z.infer<typeof catalogFileSchema>;

export interface Package {
  kind: 'package';
  id: string;
  name: string;
  credits: bigint;
  priceCents: bigint;
}

export interface Lootbox {
  kind: 'lootbox';
  id: string;
  name: string;
  priceCents: bigint;
  credits: { min: bigint; max: bigint };
  window: WindowRule;
}

export interface Plan {
  kind: 'plan';
  id: string;
  name: string;
  monthlyCredits: bigint;
  priceCents: bigint;
}

export const defaultCatalogFile = path.join(path.dirname(fileURLToPath(import.meta.url)), 'default-catalog.json');

export interface LootboxFairness {
  opensAt: Date;
  closesAt: Date;
  serverSeedHash: string;
  /** Only once the window has closed. */
  serverSeed: string | null;
}

export class Catalog {
  readonly currency: string;
  readonly packages: readonly Package[];
  readonly lootboxes: readonly Lootbox[];
  readonly plans: readonly Plan[];

  constructor(
    file: CatalogFile,
    readonly timeZone: string,
    private readonly seedSecret: string | undefined,
  ) {
    this.currency = file.currency;
    this.packages = file.packages.map((p) => ({ kind: 'package', id: p.id, name: p.name, credits: BigInt(p.credits), priceCents: BigInt(p.priceCents) }));
    this.lootboxes = file.lootboxes.map((l) => ({
      kind: 'lootbox',
      id: l.id,
      name: l.name,
      priceCents: BigInt(l.priceCents),
      credits: typeof l.credits === 'number' ? { min: BigInt(l.credits), max: BigInt(l.credits) } : { min: BigInt(l.credits.min), max: BigInt(l.credits.max) },
      window: l.window,
    }));
    this.plans = file.plans.map((p) => ({ kind: 'plan', id: p.id, name: p.name, monthlyCredits: BigInt(p.monthlyCredits), priceCents: BigInt(p.priceCents) }));
    if (this.seedSecret === undefined && this.lootboxes.some((l) => l.credits.min !== l.credits.max)) {
      throw new Error('catalog: a lootbox draws a random amount of credits, so LOOTBOX_SEED_SECRET is required');
    }
  }

  /** A package or lootbox by id. */
  product(productId: string): Package | Lootbox | undefined {
    return this.packages.find((p) => p.id === productId) ?? this.lootboxes.find((l) => l.id === productId);
  }

  plan(planId: string): Plan | undefined {
    return this.plans.find((p) => p.id === planId);
  }

  windowOf(lootbox: Lootbox, at: Date): WindowState {
    return windowAt(lootbox.window, at, this.timeZone);
  }

  /** The commitment (and after the window, the seed) of the lootbox window that opens at `opensAt`. */
  fairness(lootbox: Lootbox, opensAt: Date, now: Date): LootboxFairness | null {
    if (this.seedSecret === undefined || lootbox.credits.min === lootbox.credits.max) return null;
    const window = windowAt(lootbox.window, opensAt, this.timeZone);
    if (window.opensAt.getTime() !== opensAt.getTime()) return null;
    const seed = windowSeed(this.seedSecret, lootbox.id, opensAt);
    return {
      opensAt: window.opensAt,
      closesAt: window.closesAt,
      serverSeedHash: seedCommitment(seed),
      serverSeed: now.getTime() >= window.closesAt.getTime() ? seed : null,
    };
  }

  /**
   * The credits a lootbox purchase grants: the fixed amount, or the fair draw for the Checkout
   * Session in the window that opened at `opensAt` (recorded on the session when it was made).
   */
  lootboxCredits(lootbox: Lootbox, sessionId: string, opensAt: Date | null): bigint | null {
    if (lootbox.credits.min === lootbox.credits.max) return lootbox.credits.min;
    if (this.seedSecret === undefined || opensAt === null) return null;
    return drawCredits(windowSeed(this.seedSecret, lootbox.id, opensAt), sessionId, lootbox.credits.min, lootbox.credits.max);
  }
}

/** Reads and validates a catalog file; throws one error naming every problem. */
export function loadCatalog(file: string | undefined, timeZone: string, seedSecret: string | undefined): Catalog {
  const where = file ?? defaultCatalogFile;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(where, 'utf8'));
  } catch (error) {
    throw new Error(`catalog ${where}: ${(error as Error).message}`, { cause: error });
  }
  return parseCatalog(raw, timeZone, seedSecret, where);
}

export function parseCatalog(raw: unknown, timeZone: string, seedSecret: string | undefined, where = 'catalog'): Catalog {
  const parsed = catalogFileSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new Error(`catalog ${where} is invalid:\n  ${problems.join('\n  ')}`);
  }
  return new Catalog(parsed.data, timeZone, seedSecret);
}
