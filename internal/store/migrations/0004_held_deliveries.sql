-- Events held for a disabled endpoint are counted per endpoint at every scrape: index the
-- undelivered rows only, which stay few.
CREATE INDEX IF NOT EXISTS deliveries_undelivered ON deliveries (endpoint) WHERE delivered = 0;
