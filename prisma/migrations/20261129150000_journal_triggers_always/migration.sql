-- The journal's append-only triggers fire always: ENABLE ALWAYS makes them fire also in a
-- session with session_replication_role = replica, which otherwise skips ordinary triggers
-- (that setting needs superuser rights, which the ledger's app role does not have, but the
-- journal should not depend on who connects). Disabling them needs the table owner.
ALTER TABLE entries ENABLE ALWAYS TRIGGER entries_append_only;
ALTER TABLE entries ENABLE ALWAYS TRIGGER entries_no_truncate;
ALTER TABLE transfers ENABLE ALWAYS TRIGGER transfers_append_only;
ALTER TABLE transfers ENABLE ALWAYS TRIGGER transfers_no_truncate;
