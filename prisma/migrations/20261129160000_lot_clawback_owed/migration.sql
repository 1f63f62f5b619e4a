-- Credits a refund or dispute could not claw back because a hold had them at the time. When the
-- hold gives credits back to the lot (release, timeout, the uncaptured part of a capture), they
-- are clawed back in that same entry, up to this figure; what the hold captures is consumed
-- after the refund. It never exceeds the lot's held credits. Each change is recorded in its
-- entry's metadata, so the figure can be rebuilt from the journal.
ALTER TABLE lots ADD COLUMN clawback_owed_credits bigint NOT NULL DEFAULT 0
  CHECK (clawback_owed_credits >= 0);
