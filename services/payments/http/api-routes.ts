import { status, type ServiceError } from '@grpc/grpc-js';
import type { FastifyInstance } from 'fastify';
import { Bucket, EntryKind, TransferKind, type Entry, type GetBalanceResponse, type LedgerApi } from '../../ledger/client/index.js';
import type { Clock } from '../../lib/clock.js';
import type { Catalog } from '../catalog/catalog.js';
import { catalogView } from '../catalog/catalog-view.js';
import type { CheckoutSessions } from '../checkout.js';
import { conflict, HttpError, notFound } from './http-error.js';
import type { UserAuth } from './user-auth.js';

export interface ApiDeps {
  catalog: Catalog;
  checkout: CheckoutSessions;
  auth: UserAuth;
  ledger: Pick<LedgerApi, 'getBalance' | 'listEntries'>;
  ledgerTimeoutMs: number;
  clock: Clock;
}

const idPattern = '^[a-z0-9][a-z0-9-]{0,63}$';

const bucketNames: Record<number, string> = {
  [Bucket.BUCKET_SUBSCRIPTION]: 'subscription',
  [Bucket.BUCKET_BONUS]: 'bonus',
  [Bucket.BUCKET_PURCHASED]: 'purchased',
};

export interface BalanceView {
  userId: string;
  balance: number;
  held: number;
  available: number;
  buckets: { bucket: string; balance: number; held: number; available: number }[];
}

export function balanceView(userId: string, b: GetBalanceResponse | null): BalanceView {
  if (!b) {
    return {
      userId,
      balance: 0,
      held: 0,
      available: 0,
      buckets: ['subscription', 'bonus', 'purchased'].map((bucket) => ({ bucket, balance: 0, held: 0, available: 0 })),
    };
  }
  return {
    userId,
    balance: Number(b.balance),
    held: Number(b.held),
    available: Number(b.available),
    buckets: b.buckets.map((x) => ({ bucket: bucketNames[x.bucket] ?? 'unknown', balance: Number(x.balance), held: Number(x.held), available: Number(x.available) })),
  };
}

/** The user's balance from the ledger; a user the ledger never saw has nothing. */
export async function readBalance(deps: Pick<ApiDeps, 'ledger' | 'ledgerTimeoutMs'>, userId: string): Promise<BalanceView> {
  try {
    return balanceView(userId, await deps.ledger.getBalance({ userId }, { timeoutMs: deps.ledgerTimeoutMs }));
  } catch (error) {
    if ((error as ServiceError).code === status.NOT_FOUND) return balanceView(userId, null);
    throw ledgerError(error);
  }
}

function ledgerError(error: unknown): HttpError {
  const e = error as ServiceError;
  if (e.code === status.INVALID_ARGUMENT) return new HttpError(400, e.details);
  return new HttpError(503, 'the ledger is not reachable; try again shortly');
}

const entryKindNames = Object.fromEntries(
  Object.entries(EntryKind)
    .filter(([, v]) => typeof v === 'number')
    .map(([k, v]) => [v, k.replace(/^ENTRY_KIND_/, '')]),
) as Record<number, string>;

/** What an entry did to the user's credits: posted credit legs into and out of their lots. */
export function historyItem(userId: string, e: Entry) {
  const prefix = `user:${userId}:`;
  let credits = 0n;
  for (const t of e.transfers) {
    if (t.unit !== 'CREDIT' || (t.kind !== TransferKind.TRANSFER_KIND_POSTED && t.kind !== TransferKind.TRANSFER_KIND_POST_PENDING)) continue;
    if (t.creditAccountCode.startsWith(prefix)) credits += t.amount;
    if (t.debitAccountCode.startsWith(prefix)) credits -= t.amount;
  }
  const shown = ['package_id', 'stripe_checkout_session', 'stripe_invoice', 'reason', 'plan', 'external_ref'];
  return {
    entryId: e.entryId.toString(),
    kind: entryKindNames[e.kind] ?? 'UNKNOWN',
    recordedAt: e.recordedAt?.toISOString() ?? null,
    credits: Number(credits),
    details: Object.fromEntries(Object.entries(e.metadata).filter(([k]) => shown.includes(k))),
  };
}

export function registerApiRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const userOf = (authorization: string | undefined) => deps.auth.userId(authorization);

  app.get('/api/credits/purchase', async () => catalogView(deps.catalog, deps.clock.now()));

  app.post<{ Body: { packageId: string } }>(
    '/api/credits/purchase',
    {
      schema: {
        body: {
          type: 'object',
          required: ['packageId'],
          additionalProperties: false,
          properties: { packageId: { type: 'string', pattern: idPattern } },
        },
      },
    },
    async (request) => {
      const userId = await userOf(request.headers.authorization);
      const product = deps.catalog.product(request.body.packageId);
      if (!product) throw notFound(`packageId: no package or lootbox "${request.body.packageId}"`);
      let opensAt: Date | null = null;
      if (product.kind === 'lootbox') {
        const window = deps.catalog.windowOf(product, deps.clock.now());
        if (!window.open) {
          throw conflict(`${product.name} is on sale only inside its window; the next one opens at ${window.opensAt.toISOString()} and closes at ${window.closesAt.toISOString()}`);
        }
        opensAt = window.opensAt;
      }
      return deps.checkout.forProduct(userId, product, opensAt);
    },
  );

  app.post<{ Body: { planId: string } }>(
    '/api/credits/subscribe',
    {
      schema: {
        body: {
          type: 'object',
          required: ['planId'],
          additionalProperties: false,
          properties: { planId: { type: 'string', pattern: idPattern } },
        },
      },
    },
    async (request) => {
      const userId = await userOf(request.headers.authorization);
      const plan = deps.catalog.plan(request.body.planId);
      if (!plan) throw notFound(`planId: no plan "${request.body.planId}"`);
      return deps.checkout.forPlan(userId, plan);
    },
  );

  app.get('/api/credits/balance', async (request) => readBalance(deps, await userOf(request.headers.authorization)));

  app.get<{ Querystring: { pageSize?: string; pageToken?: string } }>(
    '/api/credits/history',
    {
      schema: {
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            // Query strings are text and the API does not coerce types: a whole number 1–100.
            pageSize: { type: 'string', pattern: '^(100|[1-9][0-9]?)$' },
            pageToken: { type: 'string', maxLength: 512, pattern: '^[A-Za-z0-9_=.-]*$' },
          },
        },
      },
    },
    async (request) => {
      const userId = await userOf(request.headers.authorization);
      try {
        const page = await deps.ledger.listEntries(
          { userId, pageSize: Number(request.query.pageSize ?? '20'), pageToken: request.query.pageToken ?? '' },
          { timeoutMs: deps.ledgerTimeoutMs },
        );
        return { entries: page.entries.map((e) => historyItem(userId, e)), nextPageToken: page.nextPageToken || null };
      } catch (error) {
        throw ledgerError(error);
      }
    },
  );

  app.get<{ Params: { id: string }; Querystring: { opensAt: string } }>(
    '/api/credits/lootboxes/:id/fairness',
    {
      schema: {
        params: { type: 'object', properties: { id: { type: 'string', pattern: idPattern } } },
        querystring: { type: 'object', required: ['opensAt'], additionalProperties: false, properties: { opensAt: { type: 'string', format: 'date-time' } } },
      },
    },
    async (request) => {
      const box = deps.catalog.lootboxes.find((l) => l.id === request.params.id);
      if (!box) throw notFound(`id: no lootbox "${request.params.id}"`);
      const fair = deps.catalog.fairness(box, new Date(request.query.opensAt), deps.clock.now());
      if (!fair) throw notFound(`opensAt: no window of ${box.name} with a random draw opens at ${request.query.opensAt}`);
      return {
        lootboxId: box.id,
        opensAt: fair.opensAt.toISOString(),
        closesAt: fair.closesAt.toISOString(),
        serverSeedHash: fair.serverSeedHash,
        serverSeed: fair.serverSeed,
        credits: { min: Number(box.credits.min), max: Number(box.credits.max) },
        algorithm: 'HMAC-SHA256(seed, "<checkout session id>:<i>"), first 8 bytes big-endian, rejection sampling into [min, max]',
      };
    },
  );
}
