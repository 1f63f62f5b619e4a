-- True once the Grant or Purchase that created the lot was reversed (ledger README §3, "Reverse
-- and lots"). The reversal took the lot's credits and, for a purchase, its deferred money back,
-- so a refund of its external_ref would pay out of recognised revenue for money that already
-- went back: refunds of a reversed lot are refused (LOT_REVERSED), and so are reversals that
-- would give credits back to it. Written by the reversal's entry, whose `lots` records it.
ALTER TABLE lots ADD COLUMN reversed boolean NOT NULL DEFAULT false;

-- The entry that last refunded or disputed the lot. Credits drawn from a refunded lot before
-- that entry were counted by its clawback as spent (its shortfall): a reversal may not give
-- them back (LOT_REFUNDED). Credits drawn after it came out of the share the refund left.
ALTER TABLE lots ADD COLUMN refunded_seq bigint;
