-- The payments service's own tables, in their own schema: it never reads or writes the
-- ledger's tables (it reaches the ledger over gRPC only), and the ledger never reads these.

CREATE SCHEMA IF NOT EXISTS payments;

-- The Stripe webhook inbox: every event whose signature verified, stored once (unique on
-- Stripe's event id) before the 2xx answer, then applied to the ledger from here with retries.
CREATE TABLE payments.stripe_events (
  event_id         text PRIMARY KEY CHECK (event_id ~ '^evt_[A-Za-z0-9_]{1,250}$'),
  type             text NOT NULL,
  -- The Stripe object the event is about (cs_…, in_…, ch_…, dp_…), for logs and reconciliation.
  object_id        text NOT NULL,
  livemode         boolean NOT NULL,
  api_version      text NULL,
  -- Stripe's `created` (when the event happened at Stripe), and when we stored it.
  stripe_created_at timestamptz(3) NOT NULL,
  received_at      timestamptz(3) NOT NULL,
  payload          jsonb NOT NULL,
  -- PENDING: to apply (due at next_attempt_at). APPLIED: the ledger has it. IGNORED: nothing
  -- to do (unknown type, unpaid session, …). PARKED: can never apply as it is (reason in
  -- last_error); an operator looks at it.
  status           text NOT NULL CHECK (status IN ('PENDING', 'APPLIED', 'IGNORED', 'PARKED')),
  attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  -- For PENDING: when the event is next due. Claiming an event pushes this forward by a lease,
  -- so a process that dies mid-apply leaves it to be claimed again when the lease ends.
  next_attempt_at  timestamptz(3) NOT NULL,
  last_error       text NULL,
  finished_at      timestamptz(3) NULL,
  -- The ledger entry the event produced (the last one, for events that post two).
  ledger_entry_id  bigint NULL,
  CONSTRAINT stripe_events_finished CHECK ((status = 'PENDING') = (finished_at IS NULL))
);

-- The applier's query: pending events that are due, oldest first.
CREATE INDEX stripe_events_due_idx ON payments.stripe_events (next_attempt_at) WHERE status = 'PENDING';
-- Parked events, for operators and the parked gauge.
CREATE INDEX stripe_events_parked_idx ON payments.stripe_events (received_at) WHERE status = 'PARKED';
