import type Stripe from 'stripe';
import type { Lootbox, Package, Plan } from './catalog/catalog.js';
import { HttpError } from './http/http-error.js';

/**
 * Creates Stripe Checkout Sessions with the metadata contract the webhook side honours:
 * `user_id` and `package_id` on payment sessions (and the lootbox window the draw belongs to);
 * `user_id` and `plan_id` in `subscription_data.metadata`, which Stripe copies to invoices
 * under `parent.subscription_details.metadata`. `client_reference_id` is the user id.
 */
export class CheckoutSessions {
  constructor(
    private readonly stripe: Stripe,
    private readonly currency: string,
    private readonly returnUrl: (path: string) => string,
  ) {}

  async forProduct(userId: string, product: Package | Lootbox, lootboxWindowOpensAt: Date | null): Promise<{ sessionId: string; url: string }> {
    const metadata: Record<string, string> = { user_id: userId, package_id: product.id };
    if (lootboxWindowOpensAt) metadata.lootbox_window_opens_at = lootboxWindowOpensAt.toISOString();
    return this.#create({
      mode: 'payment',
      client_reference_id: userId,
      line_items: [{ quantity: 1, price_data: { currency: this.currency, unit_amount: Number(product.priceCents), product_data: { name: product.name } } }],
      metadata,
      payment_intent_data: { metadata: { user_id: userId, package_id: product.id } },
      success_url: this.returnUrl('/credits/purchase?checkout=success&session_id={CHECKOUT_SESSION_ID}'),
      cancel_url: this.returnUrl('/credits/purchase?checkout=cancelled'),
    });
  }

  async forPlan(userId: string, plan: Plan): Promise<{ sessionId: string; url: string }> {
    return this.#create({
      mode: 'subscription',
      client_reference_id: userId,
      line_items: [
        {
          quantity: 1,
          price_data: { currency: this.currency, unit_amount: Number(plan.priceCents), recurring: { interval: 'month' }, product_data: { name: plan.name } },
        },
      ],
      metadata: { user_id: userId, plan_id: plan.id },
      subscription_data: { metadata: { user_id: userId, plan_id: plan.id } },
      success_url: this.returnUrl('/credits/purchase?checkout=success&session_id={CHECKOUT_SESSION_ID}'),
      cancel_url: this.returnUrl('/credits/purchase?checkout=cancelled'),
    });
  }

  async #create(params: Stripe.Checkout.SessionCreateParams): Promise<{ sessionId: string; url: string }> {
    let session: Stripe.Checkout.Session;
    try {
      session = await this.stripe.checkout.sessions.create(params);
    } catch (error) {
      throw new HttpError(502, `the payment provider did not create a checkout session: ${(error as Error).message}`);
    }
    if (!session.url) throw new HttpError(502, 'the payment provider returned a checkout session without a URL');
    return { sessionId: session.id, url: session.url };
  }
}
