-- How much a tenant's tables may grow the jobs' database (JOB_DB), in MiB: see src/bindings/storage-quota.ts.
ALTER TABLE tenants ADD COLUMN storage_limit_mb INTEGER NOT NULL DEFAULT 100;
