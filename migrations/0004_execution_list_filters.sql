-- A history list filtered by status or runtime reads only the tenant's matching rows, newest first,
-- instead of walking the tenant's whole history (executions_by_tenant has neither column).
CREATE INDEX executions_by_tenant_status ON executions (tenant_id, status, created_at DESC, id DESC);
CREATE INDEX executions_by_tenant_runtime ON executions (tenant_id, runtime, created_at DESC, id DESC);
