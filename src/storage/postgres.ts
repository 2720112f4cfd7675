/**
 * The multi-host storage engine: PostgreSQL, or any Postgres-wire engine. In production use one
 * with synchronous replication across sites (e.g. a geo-replicated Postgres-wire database), so
 * that an acknowledged append survives the loss of a site (I4); if storage ever loses an
 * acknowledged write, the HSMs refuse the shortened log and the fleet halts rather than diverges.
 */
import pg from 'pg';
import { extendsTail } from './links.js';
import type { AppendResult, Lease, NodeWrite, Storage, StoredCertificate, StoredEntry } from './types.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS bkv_entries (idx BIGINT PRIMARY KEY, entry BYTEA NOT NULL, top BYTEA);
CREATE TABLE IF NOT EXISTS bkv_nodes (hash BYTEA PRIMARY KEY, node BYTEA NOT NULL, obsolete_at BIGINT);
CREATE INDEX IF NOT EXISTS bkv_nodes_obsolete ON bkv_nodes (obsolete_at) WHERE obsolete_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS bkv_certificates (idx BIGINT PRIMARY KEY, hash BYTEA NOT NULL, statements BYTEA[] NOT NULL);
CREATE TABLE IF NOT EXISTS bkv_lease (id INT PRIMARY KEY CHECK (id = 1), holder TEXT NOT NULL, expires_at BIGINT NOT NULL);
`;

interface EntryRow {
  idx: string;
  entry: Buffer;
  top: Buffer | null;
}

function toEntry(r: EntryRow): StoredEntry {
  return { index: Number(r.idx), entry: new Uint8Array(r.entry), top: r.top ? new Uint8Array(r.top) : null };
}

export class PostgresStorage implements Storage {
  readonly engine = 'postgres' as const;

  private constructor(private readonly pool: pg.Pool) {}

  /** Connects and creates the schema (in the connection's search_path) if missing. */
  static async connect(connectionString: string, opts: { max?: number } = {}): Promise<PostgresStorage> {
    const pool = new pg.Pool({ connectionString, max: opts.max ?? 4 });
    pool.on('error', () => {
      // A dropped idle connection: the next query reconnects.
    });
    await pool.query(SCHEMA);
    return new PostgresStorage(pool);
  }

  async appendEntry(e: StoredEntry, added: NodeWrite[], removed: Uint8Array[]): Promise<AppendResult> {
    const c = await this.pool.connect();
    try {
      await c.query('BEGIN');
      if (e.index > 0) {
        const prev = await c.query<{ entry: Buffer }>('SELECT entry FROM bkv_entries WHERE idx = $1', [e.index - 1]);
        if (!extendsTail(prev.rows[0] ? new Uint8Array(prev.rows[0].entry) : undefined, e.entry, e.index)) {
          await c.query('ROLLBACK');
          return { type: 'NotLinked' };
        }
      }
      const r = await c.query('INSERT INTO bkv_entries (idx, entry, top) VALUES ($1, $2, $3) ON CONFLICT (idx) DO NOTHING', [e.index, Buffer.from(e.entry), e.top ? Buffer.from(e.top) : null]);
      if (r.rowCount === 0) {
        await c.query('ROLLBACK');
        return { type: 'IndexTaken' };
      }
      if (removed.length > 0) {
        await c.query('UPDATE bkv_nodes SET obsolete_at = $1 WHERE hash = ANY($2::bytea[]) AND obsolete_at IS NULL', [e.index, removed.map((h) => Buffer.from(h))]);
      }
      if (added.length > 0) {
        await c.query(
          'INSERT INTO bkv_nodes (hash, node, obsolete_at) SELECT h, n, NULL FROM unnest($1::bytea[], $2::bytea[]) AS t(h, n) ON CONFLICT (hash) DO UPDATE SET obsolete_at = NULL',
          [added.map((a) => Buffer.from(a.hash)), added.map((a) => Buffer.from(a.node))],
        );
      }
      await c.query('COMMIT');
      return { type: 'Appended' };
    } catch (err) {
      await c.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      c.release();
    }
  }

  async readEntries(fromIndex: number, limit: number): Promise<StoredEntry[]> {
    const r = await this.pool.query<EntryRow>('SELECT idx, entry, top FROM bkv_entries WHERE idx >= $1 ORDER BY idx LIMIT $2', [fromIndex, limit]);
    return r.rows.map(toEntry);
  }

  async latestEntry(): Promise<StoredEntry | undefined> {
    const r = await this.pool.query<EntryRow>('SELECT idx, entry, top FROM bkv_entries ORDER BY idx DESC LIMIT 1');
    return r.rows[0] ? toEntry(r.rows[0]) : undefined;
  }

  async getNode(hash: Uint8Array): Promise<Uint8Array | undefined> {
    const r = await this.pool.query<{ node: Buffer }>('SELECT node FROM bkv_nodes WHERE hash = $1', [Buffer.from(hash)]);
    return r.rows[0] ? new Uint8Array(r.rows[0].node) : undefined;
  }

  async putCertificate(c: StoredCertificate): Promise<void> {
    await this.pool.query('INSERT INTO bkv_certificates (idx, hash, statements) VALUES ($1, $2, $3) ON CONFLICT (idx) DO NOTHING', [c.index, Buffer.from(c.hash), c.statements.map((s) => Buffer.from(s))]);
  }

  async latestCertificate(): Promise<StoredCertificate | undefined> {
    const r = await this.pool.query<{ idx: string; hash: Buffer; statements: Buffer[] }>('SELECT idx, hash, statements FROM bkv_certificates ORDER BY idx DESC LIMIT 1');
    const row = r.rows[0];
    return row ? { index: Number(row.idx), hash: new Uint8Array(row.hash), statements: row.statements.map((s) => new Uint8Array(s)) } : undefined;
  }

  async compact(index: number): Promise<{ nodes: number; entries: number }> {
    const c = await this.pool.connect();
    try {
      await c.query('BEGIN');
      const n = await c.query('DELETE FROM bkv_nodes WHERE obsolete_at IS NOT NULL AND obsolete_at <= $1', [index]);
      const e = await c.query('DELETE FROM bkv_entries WHERE idx < $1', [index]);
      await c.query('DELETE FROM bkv_certificates WHERE idx < $1', [index]);
      await c.query('COMMIT');
      return { nodes: n.rowCount ?? 0, entries: e.rowCount ?? 0 };
    } catch (err) {
      await c.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      c.release();
    }
  }

  async acquireLease(holder: string, ttlMs: number, nowMs: number): Promise<Lease> {
    await this.pool.query(
      'INSERT INTO bkv_lease (id, holder, expires_at) VALUES (1, $1, $2) ON CONFLICT (id) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at WHERE bkv_lease.holder = EXCLUDED.holder OR bkv_lease.expires_at < $3',
      [holder, nowMs + ttlMs, nowMs],
    );
    const r = await this.pool.query<{ holder: string; expires_at: string }>('SELECT holder, expires_at FROM bkv_lease WHERE id = 1');
    return { holder: r.rows[0]!.holder, expiresAt: Number(r.rows[0]!.expires_at) };
  }

  async releaseLease(holder: string): Promise<void> {
    await this.pool.query('UPDATE bkv_lease SET expires_at = 0 WHERE id = 1 AND holder = $1', [holder]);
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
