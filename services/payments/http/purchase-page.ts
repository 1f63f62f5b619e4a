import type { CatalogView } from '../catalog/catalog-view.js';
import type { BalanceView } from './api-routes.js';

/**
 * The /credits/purchase page, rendered on the server with no build step: every package on sale
 * with its price, credits and price per credit, and an enabled Purchase button; lootboxes with
 * a countdown to the end (or start) of their window; plans; the signed-in user's balance per
 * bucket. The access token is read from the `access_token` cookie (as a Supabase client keeps
 * a session); the page's script sends it as a Bearer header to the JSON API, so the API itself
 * never trusts cookies (no CSRF surface).
 */

const escape = (s: string) =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

export function renderPurchasePage(view: CatalogView, balance: BalanceView | null, notice: string | null): string {
  const money = (price: string) => `$${escape(price)}`;
  const packages = view.packages
    .map(
      (p) => `
      <li class="card package" data-testid="package-${escape(p.id)}">
        <h3>${escape(p.name)}</h3>
        <p class="credits"><span data-testid="credits">${p.credits}</span> credits</p>
        <p class="price">${money(p.price)} <small>(${money(p.pricePerCredit)} per credit)</small></p>
        <p class="status available">Available</p>
        <button type="button" class="buy" data-product-id="${escape(p.id)}">Purchase</button>
      </li>`,
    )
    .join('');
  const lootboxes = view.lootboxes
    .map(
      (l) => `
      <li class="card lootbox" data-testid="lootbox-${escape(l.id)}">
        <h3>${escape(l.name)}</h3>
        <p class="credits">${l.credits.min === l.credits.max ? l.credits.min : `${l.credits.min}–${l.credits.max}`} credits</p>
        <p class="price">${money(l.price)}</p>
        <p class="status countdown" data-open="${l.available}" data-opens-at="${l.window.opensAt}" data-closes-at="${l.window.closesAt}">
          ${l.available ? 'On sale now' : 'Opens soon'}</p>
        ${l.fairness ? `<p class="fair"><small>Provably fair: seed commitment <code>${l.fairness.serverSeedHash.slice(0, 16)}…</code></small></p>` : ''}
        <button type="button" class="buy" data-product-id="${escape(l.id)}" ${l.available ? '' : 'disabled'}>Purchase</button>
      </li>`,
    )
    .join('');
  const plans = view.plans
    .map(
      (p) => `
      <li class="card plan" data-testid="plan-${escape(p.id)}">
        <h3>${escape(p.name)}</h3>
        <p class="credits">${p.monthlyCredits} credits every month</p>
        <p class="price">${money(p.price)} / month</p>
        <button type="button" class="subscribe" data-plan-id="${escape(p.id)}">Subscribe</button>
      </li>`,
    )
    .join('');
  const balanceHtml = balance
    ? `<section id="balance" data-testid="balance">
        <h2>Your credits: <span data-testid="balance-total">${balance.balance}</span></h2>
        <ul>${balance.buckets
          .map((b) => `<li data-testid="bucket-${b.bucket}">${b.bucket}: <span>${b.balance}</span>${b.held > 0 ? ` (${b.held} held)` : ''}</li>`)
          .join('')}</ul>
      </section>`
    : `<section id="balance"><p>Sign in to see your balance.</p></section>`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Buy credits</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 2rem; color: #1d2433; }
  ul.cards { list-style: none; padding: 0; display: grid; grid-template-columns: repeat(auto-fill, minmax(14rem, 1fr)); gap: 1rem; }
  .card { border: 1px solid #d5d9e2; border-radius: 8px; padding: 1rem; }
  .status.available { color: #11703a; font-weight: 600; }
  button { padding: .5rem 1rem; border-radius: 6px; border: 0; background: #3451d1; color: white; cursor: pointer; }
  button:disabled { background: #9aa3b5; cursor: default; }
  #message { min-height: 1.5rem; color: #a3261b; }
</style>
</head>
<body>
<h1>Buy credits</h1>
${notice ? `<p id="notice">${escape(notice)}</p>` : ''}
${balanceHtml}
<p id="message" role="status"></p>
<h2>Credit packages</h2>
<ul class="cards">${packages}</ul>
<h2>Lootboxes</h2>
<ul class="cards">${lootboxes}</ul>
<h2>Monthly plans</h2>
<ul class="cards">${plans}</ul>
<script>
(() => {
  const token = (document.cookie.match(/(?:^|; )access_token=([^;]*)/) || [])[1];
  const message = document.getElementById('message');
  async function checkout(path, body) {
    if (!token) { message.textContent = 'Please sign in to purchase.'; return; }
    message.textContent = 'Opening checkout…';
    const res = await fetch(path, { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer ' + decodeURIComponent(token) }, body: JSON.stringify(body) });
    const json = await res.json().catch(() => ({}));
    if (res.ok && json.url) { window.location.assign(json.url); return; }
    message.textContent = json.message || 'Checkout could not be opened (' + res.status + ').';
  }
  for (const b of document.querySelectorAll('button.buy')) b.addEventListener('click', () => checkout('/api/credits/purchase', { packageId: b.dataset.productId }));
  for (const b of document.querySelectorAll('button.subscribe')) b.addEventListener('click', () => checkout('/api/credits/subscribe', { planId: b.dataset.planId }));
  const two = (n) => String(n).padStart(2, '0');
  function tick() {
    for (const el of document.querySelectorAll('.countdown')) {
      const open = el.dataset.open === 'true';
      const target = Date.parse(open ? el.dataset.closesAt : el.dataset.opensAt);
      const s = Math.max(0, Math.floor((target - Date.now()) / 1000));
      const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
      el.textContent = (open ? 'On sale, ends in ' : 'Opens in ') + (d > 0 ? d + 'd ' : '') + two(h) + ':' + two(m) + ':' + two(s % 60);
    }
  }
  tick();
  setInterval(tick, 1000);
})();
</script>
</body>
</html>`;
}
