-- Disputes counted apart from refunds on each lot. refunded_micros stays the money paid back
-- by refunds and open (or lost) disputes together; disputed_micros is the part of it that
-- disputes took and that no won dispute has given back. So refunds alone total
-- refunded_micros - disputed_micros, which Refund's cumulative refunded_micros_target is
-- compared with (Stripe's charge.amount_refunded never counts disputes).
ALTER TABLE lots
  ADD COLUMN disputed_micros bigint NOT NULL DEFAULT 0,
  ADD CONSTRAINT lots_disputed_within_refunded CHECK (disputed_micros >= 0 AND disputed_micros <= refunded_micros);
