-- Whether an ExecutionTracker (an asynchronous job's object) holds a copy of the result, which must be
-- deleted with the row. Synchronous jobs are journaled by their tenant's ledger until written here.
ALTER TABLE executions ADD COLUMN tracked INTEGER NOT NULL DEFAULT 1;
