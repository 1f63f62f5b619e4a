import type { Catalog } from './catalog.js';

/**
 * The catalog as GET /api/credits/purchase answers it. It keeps the old route's contract
 * (every package `available: true`, `platformCapacity`), adds lootboxes with their window and
 * plans. Money is given in cents and as a decimal string; bigints become strings only where a
 * value could exceed 2^53 (never for these amounts, so numbers are used).
 */
export interface CatalogView {
  currency: string;
  packages: { id: string; name: string; credits: number; priceCents: number; price: string; pricePerCredit: string; available: true }[];
  lootboxes: {
    id: string;
    name: string;
    priceCents: number;
    price: string;
    credits: { min: number; max: number };
    available: boolean;
    window: { opensAt: string; closesAt: string };
    fairness: { serverSeedHash: string; windowOpensAt: string } | null;
  }[];
  plans: { id: string; name: string; monthlyCredits: number; priceCents: number; price: string }[];
  platformCapacity: { model: 'wavespeed_pay_per_use'; allPackagesAvailable: true; note: string };
}

/** Cents as a decimal string ("299.99"). */
export function formatCents(cents: bigint): string {
  return `${cents / 100n}.${(cents % 100n).toString().padStart(2, '0')}`;
}

/** Price per credit to the cent, rounded half up ("0.60"). */
export function perCredit(cents: bigint, credits: bigint): string {
  return formatCents((cents * 2n + credits) / (credits * 2n));
}

export function catalogView(catalog: Catalog, now: Date): CatalogView {
  return {
    currency: catalog.currency,
    packages: catalog.packages.map((p) => ({
      id: p.id,
      name: p.name,
      credits: Number(p.credits),
      priceCents: Number(p.priceCents),
      price: formatCents(p.priceCents),
      pricePerCredit: perCredit(p.priceCents, p.credits),
      available: true,
    })),
    lootboxes: catalog.lootboxes.map((l) => {
      const w = catalog.windowOf(l, now);
      const fair = catalog.fairness(l, w.opensAt, now);
      return {
        id: l.id,
        name: l.name,
        priceCents: Number(l.priceCents),
        price: formatCents(l.priceCents),
        credits: { min: Number(l.credits.min), max: Number(l.credits.max) },
        available: w.open,
        window: { opensAt: w.opensAt.toISOString(), closesAt: w.closesAt.toISOString() },
        fairness: fair ? { serverSeedHash: fair.serverSeedHash, windowOpensAt: fair.opensAt.toISOString() } : null,
      };
    }),
    plans: catalog.plans.map((p) => ({ id: p.id, name: p.name, monthlyCredits: Number(p.monthlyCredits), priceCents: Number(p.priceCents), price: formatCents(p.priceCents) })),
    platformCapacity: {
      model: 'wavespeed_pay_per_use',
      allPackagesAvailable: true,
      note: 'All credit packages always available (pay-per-use billing)',
    },
  };
}
