import { describe, expect, it } from 'vitest';
import { storablePayload } from '../http/webhook-route.js';
import { microsPerMinorUnit } from './apply-event.js';

describe('webhook payload and amounts', () => {
  it('U+0000 escapes become U+FFFD; escaped backslashes and everything else stay as they were', () => {
    const original = { a: 'x\u0000y', b: '\\u0000', c: '\\\u0000', d: 'plain' };
    expect(JSON.parse(storablePayload(JSON.stringify(original)))).toEqual({ a: 'x\ufffdy', b: '\\u0000', c: '\\\ufffd', d: 'plain' });
    const clean = JSON.stringify({ a: 'no nul here' });
    expect(storablePayload(clean)).toBe(clean);
  });

  it('Stripe amounts convert by the currency exponent', () => {
    expect(microsPerMinorUnit('usd')).toBe(10_000n);
    expect(microsPerMinorUnit('JPY')).toBe(1_000_000n);
    expect(microsPerMinorUnit('kwd')).toBe(1_000n);
  });
});
