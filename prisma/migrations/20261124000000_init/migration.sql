-- The ledger's initial schema. See ledger README §2–§5 and prisma/schema.prisma.
-- Every amount is bigint. Transfers carry no foreign keys on purpose: they are the hottest
-- append-only table and the journal's own checks (services/ledger/audit) prove their integrity.

CREATE TABLE users (
  id          text PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 128),
  created_at  timestamptz(3) NOT NULL DEFAULT now()
);

CREATE TABLE accounts (
  id               bigserial PRIMARY KEY,
  code             text NOT NULL UNIQUE,
  unit             text NOT NULL CHECK (unit = 'CREDIT' OR unit ~ '^[A-Z]{3}$'),
  kind             text NOT NULL CHECK (kind IN ('PLATFORM', 'LOT', 'DEFERRED')),
  user_id          text NULL REFERENCES users (id),
  flags            integer NOT NULL DEFAULT 0,
  debits_posted    bigint NOT NULL DEFAULT 0 CHECK (debits_posted >= 0),
  credits_posted   bigint NOT NULL DEFAULT 0 CHECK (credits_posted >= 0),
  debits_pending   bigint NOT NULL DEFAULT 0 CHECK (debits_pending >= 0),
  credits_pending  bigint NOT NULL DEFAULT 0 CHECK (credits_pending >= 0),
  version          bigint NOT NULL DEFAULT 0 CHECK (version >= 0),
  created_at       timestamptz(3) NOT NULL DEFAULT now(),
  -- Flag 1: debits (posted and pending) must never exceed posted credits. User lots and their
  -- deferred-revenue accounts carry it; platform accounts do not.
  CONSTRAINT accounts_no_overdraft
    CHECK ((flags & 1) = 0 OR debits_posted + debits_pending <= credits_posted),
  CONSTRAINT accounts_user_scoped CHECK ((kind = 'PLATFORM') = (user_id IS NULL))
);

CREATE TABLE lots (
  account_id           bigint PRIMARY KEY REFERENCES accounts (id),
  user_id              text NOT NULL REFERENCES users (id),
  bucket               text NOT NULL CHECK (bucket IN ('SUBSCRIPTION', 'BONUS', 'PURCHASED')),
  granted_credits      bigint NOT NULL CHECK (granted_credits > 0),
  effective_at         timestamptz(3) NOT NULL,
  expires_at           timestamptz(3) NULL CHECK (expires_at IS NULL OR expires_at > effective_at),
  priority             integer NOT NULL DEFAULT 0,
  cost_basis_micros    bigint NOT NULL DEFAULT 0 CHECK (cost_basis_micros >= 0),
  currency             text NULL CHECK (currency IS NULL OR currency ~ '^[A-Z]{3}$'),
  deferred_account_id  bigint NULL UNIQUE REFERENCES accounts (id),
  external_ref         text NULL UNIQUE,
  entry_seq            bigint NOT NULL,
  -- Subscription lots: the plan and the period they belong to (one lot per user and period).
  plan                 text NULL,
  period_start         timestamptz(3) NULL,
  -- Money refunded so far against this lot (refunds are cumulative, never above the cost).
  refunded_micros      bigint NOT NULL DEFAULT 0 CHECK (refunded_micros >= 0 AND refunded_micros <= cost_basis_micros),
  -- Deferred money this lot has sent to breakage (expiry), less what refunds took back from
  -- it: a refund of expired credits comes out of breakage before recognised revenue.
  breakage_micros      bigint NOT NULL DEFAULT 0 CHECK (breakage_micros >= 0 AND breakage_micros <= cost_basis_micros),
  -- Set once the expiry sweeper has nothing more to do for the lot: its remainder at expiry
  -- was journaled (or there was none). Credits held at expiry are expired when released.
  expiry_swept         boolean NOT NULL DEFAULT false,
  -- A paid lot has a currency and a deferred-revenue account; a free one has neither.
  CONSTRAINT lots_paid_shape CHECK (
    (cost_basis_micros > 0) = (deferred_account_id IS NOT NULL)
    AND (cost_basis_micros > 0) = (currency IS NOT NULL))
);
CREATE INDEX lots_user_id_idx ON lots (user_id);
CREATE UNIQUE INDEX lots_subscription_period_idx ON lots (user_id, period_start)
  WHERE bucket = 'SUBSCRIPTION' AND period_start IS NOT NULL;
-- The expiry sweeper's query: lots past expiry it has not finished with.
CREATE INDEX lots_expiry_pending_idx ON lots (expires_at)
  WHERE expires_at IS NOT NULL AND NOT expiry_swept;

CREATE TABLE entries (
  seq              bigint PRIMARY KEY CHECK (seq > 0),
  kind             text NOT NULL,
  user_id          text NULL,
  hold_id          uuid NULL,
  idempotency_key  text NOT NULL UNIQUE,
  request_hash     bytea NOT NULL CHECK (length(request_hash) = 32),
  actor            text NOT NULL,
  recorded_at      timestamptz(3) NOT NULL,
  effective_at     timestamptz(3) NOT NULL,
  policy_version   text NULL,
  allocation       jsonb NULL,
  metadata         jsonb NOT NULL DEFAULT '{}',
  result           jsonb NOT NULL,
  -- A reversal names the entry it mirrors; an entry is reversed at most once.
  reverses_seq     bigint NULL UNIQUE,
  prev_hash        bytea NOT NULL CHECK (length(prev_hash) = 32),
  hash             bytea NOT NULL CHECK (length(hash) = 32)
);
CREATE INDEX entries_user_id_seq_idx ON entries (user_id, seq);
CREATE INDEX entries_kind_seq_idx ON entries (kind, seq);
-- "The last entry recorded at or before T" (point-in-time reads): recorded_at grows with seq.
CREATE INDEX entries_recorded_at_idx ON entries (recorded_at, seq);

CREATE TABLE transfers (
  entry_seq             bigint NOT NULL,
  idx                   smallint NOT NULL CHECK (idx >= 0),
  kind                  text NOT NULL
    CHECK (kind IN ('POSTED', 'PENDING', 'POST_PENDING', 'VOID_PENDING')),
  debit_account_id      bigint NOT NULL,
  credit_account_id     bigint NOT NULL,
  amount                bigint NOT NULL CHECK (amount > 0),
  unit                  text NOT NULL,
  pending_seq           bigint NULL,
  pending_idx           smallint NULL,
  debit_version         bigint NULL,
  debit_balance_after   bigint NULL,
  debit_held_after      bigint NULL,
  credit_version        bigint NULL,
  credit_balance_after  bigint NULL,
  credit_held_after     bigint NULL,
  PRIMARY KEY (entry_seq, idx),
  CONSTRAINT transfers_distinct_accounts CHECK (debit_account_id <> credit_account_id),
  CONSTRAINT transfers_pending_ref CHECK (
    (kind IN ('POST_PENDING', 'VOID_PENDING')) = (pending_seq IS NOT NULL AND pending_idx IS NOT NULL))
);
-- An account's history in journal order, per side: "the balance of account A after entry S"
-- is one probe per side (ORDER BY entry_seq DESC LIMIT 1), which point-in-time reads use.
CREATE INDEX transfers_debit_account_idx ON transfers (debit_account_id, entry_seq);
CREATE INDEX transfers_credit_account_idx ON transfers (credit_account_id, entry_seq);

CREATE TABLE holds (
  id                uuid PRIMARY KEY,
  user_id           text NOT NULL,
  reserve_seq       bigint NOT NULL,
  credits           bigint NOT NULL CHECK (credits > 0),
  expires_at        timestamptz(3) NOT NULL,
  status            text NOT NULL CHECK (status IN ('OPEN', 'CAPTURED', 'RELEASED', 'EXPIRED')),
  closed_seq        bigint NULL,
  captured_credits  bigint NULL,
  CONSTRAINT holds_closed_shape CHECK ((status = 'OPEN') = (closed_seq IS NULL))
);
CREATE INDEX holds_user_id_idx ON holds (user_id);
-- The sweeper's query: open holds by expiry.
CREATE INDEX holds_open_expires_at_idx ON holds (expires_at) WHERE status = 'OPEN';

-- recorded_at of the last entry: new entries never get an earlier one, so recorded_at grows
-- with seq even when ledger processes' clocks disagree, and "as of time T" is "up to seq S".
CREATE TABLE journal_head (
  id           smallint PRIMARY KEY CHECK (id = 1),
  seq          bigint NOT NULL CHECK (seq >= 0),
  hash         bytea NOT NULL CHECK (length(hash) = 32),
  recorded_at  timestamptz(3) NOT NULL
);
-- Genesis: sequence 0 and a hash of 32 zero bytes.
INSERT INTO journal_head (id, seq, hash, recorded_at)
VALUES (1, 0, decode(repeat('00', 32), 'hex'), '1970-01-01T00:00:00Z');

-- Entries and transfers are append-only: a correction is a new entry.
CREATE FUNCTION ledger_reject_mutation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'ledger: % on % is forbidden: the journal is append-only', TG_OP, TG_TABLE_NAME
    USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER entries_append_only BEFORE UPDATE OR DELETE ON entries
  FOR EACH ROW EXECUTE FUNCTION ledger_reject_mutation();
CREATE TRIGGER entries_no_truncate BEFORE TRUNCATE ON entries
  FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_mutation();
CREATE TRIGGER transfers_append_only BEFORE UPDATE OR DELETE ON transfers
  FOR EACH ROW EXECUTE FUNCTION ledger_reject_mutation();
CREATE TRIGGER transfers_no_truncate BEFORE TRUNCATE ON transfers
  FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_mutation();

-- The credit-side platform accounts. Money-side ones are per currency and created by the
-- ledger at start-up for its configured currencies.
INSERT INTO accounts (code, unit, kind) VALUES
  ('platform.credits_issued', 'CREDIT', 'PLATFORM'),
  ('platform.credits_consumed', 'CREDIT', 'PLATFORM'),
  ('platform.credits_expired', 'CREDIT', 'PLATFORM'),
  ('platform.credits_clawed_back', 'CREDIT', 'PLATFORM');

-- The old product's `user_credits` table, as a read-only view over the ledger, for readers that
-- have not moved to GetBalance yet. Balances are GetBalance's: posted credits left in the
-- user's lots, held credits included (as the old current_balance did), until the expiry
-- sweeper or a renewal journals their expiry; the bonus column holds lootbox and promotional
-- credits, which the old table folded into current_balance. A view with GROUP BY cannot be
-- written through: writes must go through the ledger.
CREATE VIEW user_credits AS
SELECT u.id AS user_id,
       COALESCE(SUM(a.credits_posted - a.debits_posted), 0)::bigint AS current_balance,
       COALESCE(SUM(a.credits_posted - a.debits_posted) FILTER (WHERE l.bucket = 'PURCHASED'), 0)::bigint
         AS purchased_credits_balance,
       COALESCE(SUM(a.credits_posted - a.debits_posted) FILTER (WHERE l.bucket = 'SUBSCRIPTION'), 0)::bigint
         AS subscription_credits_balance,
       COALESCE(SUM(a.credits_posted - a.debits_posted) FILTER (WHERE l.bucket = 'BONUS'), 0)::bigint
         AS bonus_credits_balance,
       COALESCE(SUM(a.debits_pending), 0)::bigint AS held_credits,
       (SELECT s.plan FROM lots s WHERE s.user_id = u.id AND s.bucket = 'SUBSCRIPTION' AND s.plan IS NOT NULL
         ORDER BY s.period_start DESC LIMIT 1) AS subscription_plan,
       (SELECT s.expires_at FROM lots s WHERE s.user_id = u.id AND s.bucket = 'SUBSCRIPTION'
         ORDER BY s.expires_at DESC NULLS LAST LIMIT 1) AS subscription_period_end,
       u.created_at
  FROM users u
  LEFT JOIN lots l ON l.user_id = u.id
  LEFT JOIN accounts a ON a.id = l.account_id
 GROUP BY u.id, u.created_at;
COMMENT ON VIEW user_credits IS 'Read-only legacy view of ledger balances; write through the ledger gRPC API.';
