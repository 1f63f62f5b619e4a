// `npm run demo`, against a running `npm start`: the seed's story end to end, through the same
// doors a product uses. It signs a user in (the local sign-in page), buys the Studio Pack
// (POST /api/credits/purchase, then "Pay" on the local checkout, which delivers Stripe's signed
// webhooks), waits for the credits, enqueues a few enhancements (BullMQ, as the product's
// backend would) and waits for them, then prints the balance per bucket, the journal entries it
// caused and the margin so far. Exits 1 if any step did not do what it says.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLedgerClient, EntryKind } from '../services/ledger/client/index.js';
import { openEnhancementProducer } from '../services/worker/producer.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dataDir = path.resolve(root, process.env.DATA_DIR ?? '.data');

interface System {
  ledger: string;
  payments: string;
  redis: string;
  queuePrefix: string;
  credentialsFile: string;
}

function fail(step: string, detail: unknown): never {
  console.error(`demo: ${step} failed: ${detail instanceof Error ? detail.message : String(detail)}`);
  process.exit(1);
}

function step(text: string): void {
  console.log(`\n▶ ${text}`);
}

const usd = (micros: bigint) => `$${(Number(micros) / 1e6).toFixed(2)}`;

let system: System;
try {
  system = JSON.parse(readFileSync(path.join(dataDir, 'system.json'), 'utf8')) as System;
} catch {
  fail('finding the running system', `no ${path.join(dataDir, 'system.json')}: start it first with npm start`);
}
const credentials = JSON.parse(readFileSync(system.credentialsFile, 'utf8')) as { role: string; token: string }[];
const auditorToken = credentials.find((c) => c.role === 'auditor' || c.role === 'admin')!.token;
const userId = process.env.DEMO_USER ?? `demo-${Date.now().toString(36)}`;

step(`sign in as ${userId}`);
const signIn = await fetch(`${system.payments}/dev/sign-in?user_id=${encodeURIComponent(userId)}`, { redirect: 'manual' }).catch((e) => fail('sign-in', e));
const token = /access_token=([^;]+)/.exec(signIn.headers.get('set-cookie') ?? '')?.[1];
if (signIn.status !== 303 || !token) fail('sign-in', `HTTP ${signIn.status} without a token (is the local sign-in on? npm start turns it on without Stripe keys)`);
const auth = { authorization: `Bearer ${token}` };

step('buy the Studio Pack (500 credits, $299.99)');
const catalog = (await (await fetch(`${system.payments}/api/credits/purchase`)).json()) as { packages: { id: string; available: boolean }[] };
if (!catalog.packages.every((p) => p.available)) fail('catalog', 'a package is not available');
const bought = await fetch(`${system.payments}/api/credits/purchase`, {
  method: 'POST',
  headers: { ...auth, 'content-type': 'application/json' },
  body: JSON.stringify({ packageId: 'studio-pack' }),
});
if (bought.status !== 200) fail('purchase', `HTTP ${bought.status}: ${await bought.text()}`);
const { url: checkoutUrl, sessionId } = (await bought.json()) as { url: string; sessionId: string };
console.log(`  checkout session ${sessionId}`);
const paid = await fetch(checkoutUrl, { method: 'POST', redirect: 'manual' });
if (paid.status !== 303) fail('paying on the local checkout', `HTTP ${paid.status}: ${await paid.text()}`);

step('wait for the webhook to credit the purchase');
let total = 0;
for (let i = 0; i < 100 && total < 500; i += 1) {
  const balance = (await (await fetch(`${system.payments}/api/credits/balance`, { headers: auth })).json()) as { balance?: number };
  total = Number(balance.balance ?? 0);
  if (total < 500) await new Promise((r) => setTimeout(r, 200));
}
if (total < 500) fail('crediting the purchase', `balance ${total} after 20 s`);
console.log(`  balance ${total}`);

step('enhance three images');
const producer = await openEnhancementProducer(system.redis, system.queuePrefix);
let charged = 0n;
try {
  const outcomes = await Promise.all(
    [1, 2, 3].map((i) =>
      producer.run(
        { requestId: `${userId}-req-${i}`, userId, model: 'wavespeed-ai/image-upscaler', input: { image: `https://example.test/photo-${i}.png`, target_resolution: '4k' } },
        120_000,
      ),
    ),
  );
  for (const o of outcomes) {
    if (!o.ok) fail('an enhancement', `${o.reason}: ${o.message}`);
    console.log(`  ${o.predictionId}: ${o.outputs[0]} (${o.creditsCharged} credits, upstream ${usd(o.upstreamCostMicros)})`);
    charged += o.creditsCharged;
  }
} finally {
  await producer.close();
}

step('balance per bucket');
const balance = (await (await fetch(`${system.payments}/api/credits/balance`, { headers: auth })).json()) as Record<string, unknown>;
console.log(JSON.stringify(balance, null, 2));
if (Number(balance.balance) !== 500 - Number(charged)) fail('the balance after enhancing', `expected ${500 - Number(charged)}, got ${String(balance.balance)}`);

step('the journal entries this caused');
const ledger = createLedgerClient(system.ledger, auditorToken);
const { entries } = await ledger.listEntries({ userId });
ledger.close();
let recognized = 0n;
let upstream = 0n;
for (const e of entries) {
  const usdMoved = e.transfers.filter((t) => t.unit === 'USD').reduce((sum, t) => sum + t.amount, 0n);
  const cost = BigInt(e.metadata['upstream.amount_micros'] ?? '0');
  if (e.kind === EntryKind.ENTRY_KIND_CAPTURE || e.kind === EntryKind.ENTRY_KIND_CONSUME) {
    recognized += usdMoved - cost;
    upstream += cost;
  }
  const credits = e.transfers.filter((t) => t.unit === 'CREDIT').map((t) => t.amount);
  console.log(`  #${e.entryId} ${EntryKind[e.kind]!.replace('ENTRY_KIND_', '')} credits ${credits.join('+') || '0'}${usdMoved ? `, USD moved ${usd(usdMoved)}` : ''}  hash ${Buffer.from(e.hash).toString('hex').slice(0, 16)}…`);
}
const kinds = entries.map((e) => EntryKind[e.kind]);
if (!kinds.includes('ENTRY_KIND_PURCHASE')) fail('the journal', 'no PURCHASE entry');

step('margin so far (this user)');
console.log(`  revenue recognised ${usd(recognized)}, upstream cost ${usd(upstream)}, margin ${usd(recognized - upstream)}`);
console.log('\ndemo: every step did what it says');
process.exit(0);
