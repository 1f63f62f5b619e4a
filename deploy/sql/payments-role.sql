-- The payments service's database role, run by psql as a superuser after the migrations and
-- `db-roles` (README.md, "Running in production"). Idempotent: safe to run again after every migration.
--
-- Inputs (psql variables): owner (the ledger's owner role, which runs migrations),
-- payments_app (the role payments connects as), payments_app_password.
-- Locks: catalog and ownership changes on schema `payments` only, in one transaction.
-- Output: schema `payments` and its tables owned by the owner role (so later migrations, run as
-- the owner, can alter them); the payments role may read and write those tables and nothing of
-- the ledger's (it has no grant on any table in `public`).
\set ON_ERROR_STOP on
BEGIN;
SELECT format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB', :'payments_app')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'payments_app') \gexec
ALTER ROLE :"payments_app" PASSWORD :'payments_app_password';
ALTER SCHEMA payments OWNER TO :"owner";
SELECT format('ALTER TABLE payments.%I OWNER TO %I', tablename, :'owner')
  FROM pg_tables WHERE schemaname = 'payments' \gexec
SELECT format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), :'payments_app') \gexec
GRANT USAGE ON SCHEMA payments TO :"payments_app";
GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA payments TO :"payments_app";
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA payments TO :"payments_app";
-- Tables a later migration (run as the owner) adds to the schema get the same grants.
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA payments
  GRANT SELECT, INSERT, UPDATE ON TABLES TO :"payments_app";
COMMIT;
