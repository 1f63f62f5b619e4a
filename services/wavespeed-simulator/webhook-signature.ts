import { createHmac } from 'node:crypto';

/**
 * Wavespeed's webhook signature: HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.{raw body}`,
 * keyed with the secret minus its `whsec_` prefix (used as text, not base64-decoded), sent as
 * `webhook-signature: v3,<hex>`.
 */
export function signWebhook(secret: string, id: string, timestampS: number, body: string): string {
  const key = secret.startsWith('whsec_') ? secret.slice('whsec_'.length) : secret;
  const hex = createHmac('sha256', key).update(`${id}.${timestampS}.${body}`).digest('hex');
  return `v3,${hex}`;
}
