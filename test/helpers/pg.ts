/** A fresh schema on the test PostgreSQL server for each use. */
import { inject } from 'vitest';
import pg from 'pg';
import { randomBytes } from 'node:crypto';

/** The URL of a new, empty schema; throws (in CI) or returns undefined with a reason if no server. */
export async function freshPgUrl(): Promise<string> {
  const url = inject('pgUrl');
  if (!url) throw new Error(inject('pgMissing'));
  const schema = `t_${randomBytes(6).toString('hex')}`;
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  await c.query(`CREATE SCHEMA ${schema}`);
  await c.end();
  const u = new URL(url);
  u.searchParams.set('options', `-c search_path=${schema}`);
  return u.toString();
}

/** Whether the PostgreSQL suite can run here; in CI it must. */
export function pgAvailable(): boolean {
  if (inject('pgUrl')) return true;
  if (process.env.CI) throw new Error(`CI must run the PostgreSQL suite: ${inject('pgMissing')}`);
  console.warn(`\n*** Skipping the PostgreSQL storage suite: ${inject('pgMissing')} ***\n`);
  return false;
}
