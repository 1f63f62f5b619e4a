-- The W3C traceparent of the webhook delivery that stored the event (null when tracing is off),
-- so that applying it later, in another pass or process, continues the same trace.
ALTER TABLE payments.stripe_events ADD COLUMN traceparent text NULL
  CHECK (traceparent IS NULL OR traceparent ~ '^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$');
