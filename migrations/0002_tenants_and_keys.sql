-- Tenants, their API keys (stored only as SHA-256 hashes), and tenant scoping of the execution log.
CREATE TABLE tenants (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  max_trust_level TEXT NOT NULL CHECK (max_trust_level IN ('high', 'medium', 'low', 'untrusted')),
  rate_limit_per_hour INTEGER NOT NULL,
  max_concurrency INTEGER NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);

CREATE TABLE api_keys (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants (id),
  -- The visible part of the key (e.g. ck_3f9a0c1b2d4e), unique, used to find the row.
  prefix TEXT NOT NULL UNIQUE,
  hash TEXT NOT NULL,
  name TEXT,
  rate_limit_per_hour INTEGER,
  created_at TEXT NOT NULL,
  revoked_at TEXT
);

CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id, created_at);

ALTER TABLE executions ADD COLUMN tenant_id TEXT NOT NULL DEFAULT '';
ALTER TABLE executions ADD COLUMN trust_level TEXT NOT NULL DEFAULT 'untrusted';

CREATE INDEX executions_by_tenant ON executions (tenant_id, created_at DESC, id DESC);
