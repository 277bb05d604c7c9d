-- One row per accepted job: its final result, stored once the job has ended.
CREATE TABLE executions (
  id TEXT PRIMARY KEY,
  runtime TEXT NOT NULL,
  status TEXT NOT NULL,
  success INTEGER NOT NULL,
  error_code TEXT,
  code_sha256 TEXT NOT NULL,
  result_json TEXT NOT NULL,
  created_at TEXT NOT NULL,
  finished_at TEXT NOT NULL
);

CREATE INDEX executions_by_created ON executions (created_at DESC, id DESC);
