/**
 * Versioned schema for a Durable Object's SQLite storage: an ordered list of migrations next to the
 * class, applied from the stored version up, in the constructor (inside the object's input gate).
 */
export function migrateSqlite(sql: SqlStorage, migrations: readonly string[]): void {
  sql.exec("CREATE TABLE IF NOT EXISTS _schema (version INTEGER NOT NULL)");
  const row = sql.exec<{ version: number }>("SELECT version FROM _schema").toArray()[0];
  const current = row?.version ?? 0;
  for (let version = current; version < migrations.length; version++) sql.exec(migrations[version] ?? "");
  if (row === undefined) sql.exec("INSERT INTO _schema (version) VALUES (?)", migrations.length);
  else if (current < migrations.length) sql.exec("UPDATE _schema SET version = ?", migrations.length);
}
