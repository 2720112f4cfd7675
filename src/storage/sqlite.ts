/**
 * The embedded storage engine: one SQLite file, WAL with synchronous=FULL so that an
 * acknowledged append survives a crash (I4), and secure_delete so that removed tree nodes
 * (old copies of records) are overwritten rather than left in free pages (I3).
 */
import Database from 'better-sqlite3';
import { extendsTail } from './links.js';
import type { AppendResult, Lease, NodeWrite, Storage, StoredCertificate, StoredEntry } from './types.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS entries (idx INTEGER PRIMARY KEY, entry BLOB NOT NULL, top BLOB);
CREATE TABLE IF NOT EXISTS nodes (hash BLOB PRIMARY KEY, node BLOB NOT NULL, obsolete_at INTEGER) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS nodes_obsolete ON nodes (obsolete_at) WHERE obsolete_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS certificates (idx INTEGER PRIMARY KEY, hash BLOB NOT NULL, statements BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS lease (id INTEGER PRIMARY KEY CHECK (id = 1), holder TEXT NOT NULL, expires_at INTEGER NOT NULL);
`;

function encodeStatements(list: Uint8Array[]): Buffer {
  const parts: Buffer[] = [];
  for (const s of list) {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(s.length);
    parts.push(len, Buffer.from(s));
  }
  return Buffer.concat(parts);
}

function decodeStatements(b: Buffer): Uint8Array[] {
  const out: Uint8Array[] = [];
  let o = 0;
  while (o + 4 <= b.length) {
    const n = b.readUInt32BE(o);
    out.push(new Uint8Array(b.subarray(o + 4, o + 4 + n)));
    o += 4 + n;
  }
  return out;
}

interface EntryRow {
  idx: number;
  entry: Buffer;
  top: Buffer | null;
}

function toEntry(r: EntryRow): StoredEntry {
  return { index: r.idx, entry: new Uint8Array(r.entry), top: r.top ? new Uint8Array(r.top) : null };
}

export class SqliteStorage implements Storage {
  readonly engine = 'sqlite' as const;
  private readonly db: Database.Database;
  private readonly stmts;

  constructor(readonly path: string) {
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma('secure_delete = ON');
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(SCHEMA);
    this.stmts = {
      insertEntry: this.db.prepare('INSERT INTO entries (idx, entry, top) VALUES (?, ?, ?) ON CONFLICT (idx) DO NOTHING'),
      upsertNode: this.db.prepare('INSERT INTO nodes (hash, node, obsolete_at) VALUES (?, ?, NULL) ON CONFLICT (hash) DO UPDATE SET obsolete_at = NULL'),
      obsoleteNode: this.db.prepare('UPDATE nodes SET obsolete_at = ? WHERE hash = ? AND obsolete_at IS NULL'),
      readEntries: this.db.prepare('SELECT idx, entry, top FROM entries WHERE idx >= ? ORDER BY idx LIMIT ?'),
      latest: this.db.prepare('SELECT idx, entry, top FROM entries ORDER BY idx DESC LIMIT 1'),
      getNode: this.db.prepare('SELECT node FROM nodes WHERE hash = ?'),
      putCert: this.db.prepare('INSERT INTO certificates (idx, hash, statements) VALUES (?, ?, ?) ON CONFLICT (idx) DO NOTHING'),
      latestCert: this.db.prepare('SELECT idx, hash, statements FROM certificates ORDER BY idx DESC LIMIT 1'),
      gcNodes: this.db.prepare('DELETE FROM nodes WHERE obsolete_at IS NOT NULL AND obsolete_at <= ?'),
      gcEntries: this.db.prepare('DELETE FROM entries WHERE idx < ?'),
      gcCerts: this.db.prepare('DELETE FROM certificates WHERE idx < ?'),
      takeLease: this.db.prepare('INSERT INTO lease (id, holder, expires_at) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at WHERE lease.holder = excluded.holder OR lease.expires_at < ?'),
      readLease: this.db.prepare('SELECT holder, expires_at FROM lease WHERE id = 1'),
      releaseLease: this.db.prepare('UPDATE lease SET expires_at = 0 WHERE id = 1 AND holder = ?'),
    };
  }

  private readonly appendTx = (e: StoredEntry, added: NodeWrite[], removed: Uint8Array[]): AppendResult => {
    return this.db.transaction((): AppendResult => {
      const prev = e.index > 0 ? (this.stmts.readEntries.all(e.index - 1, 1) as EntryRow[])[0] : undefined;
      if (e.index > 0 && prev?.idx !== e.index - 1) return { type: 'NotLinked' };
      if (!extendsTail(prev ? new Uint8Array(prev.entry) : undefined, e.entry, e.index)) return { type: 'NotLinked' };
      const r = this.stmts.insertEntry.run(e.index, Buffer.from(e.entry), e.top ? Buffer.from(e.top) : null);
      if (r.changes === 0) return { type: 'IndexTaken' };
      for (const h of removed) this.stmts.obsoleteNode.run(e.index, Buffer.from(h));
      for (const n of added) this.stmts.upsertNode.run(Buffer.from(n.hash), Buffer.from(n.node));
      return { type: 'Appended' };
    })();
  };

  async appendEntry(e: StoredEntry, added: NodeWrite[], removed: Uint8Array[]): Promise<AppendResult> {
    return this.appendTx(e, added, removed);
  }

  async readEntries(fromIndex: number, limit: number): Promise<StoredEntry[]> {
    return (this.stmts.readEntries.all(fromIndex, limit) as EntryRow[]).map(toEntry);
  }

  async latestEntry(): Promise<StoredEntry | undefined> {
    const r = this.stmts.latest.get() as EntryRow | undefined;
    return r ? toEntry(r) : undefined;
  }

  /** Synchronous node read: lets the agent walk a path without a round trip per level. */
  getNodeSync(hash: Uint8Array): Uint8Array | undefined {
    const r = this.stmts.getNode.get(Buffer.from(hash)) as { node: Buffer } | undefined;
    return r ? new Uint8Array(r.node) : undefined;
  }

  async getNode(hash: Uint8Array): Promise<Uint8Array | undefined> {
    return this.getNodeSync(hash);
  }

  async putCertificate(c: StoredCertificate): Promise<void> {
    this.stmts.putCert.run(c.index, Buffer.from(c.hash), encodeStatements(c.statements));
  }

  async latestCertificate(): Promise<StoredCertificate | undefined> {
    const r = this.stmts.latestCert.get() as { idx: number; hash: Buffer; statements: Buffer } | undefined;
    return r ? { index: r.idx, hash: new Uint8Array(r.hash), statements: decodeStatements(r.statements) } : undefined;
  }

  async compact(index: number): Promise<{ nodes: number; entries: number }> {
    return this.db.transaction(() => {
      const nodes = this.stmts.gcNodes.run(index).changes;
      const entries = this.stmts.gcEntries.run(index).changes;
      this.stmts.gcCerts.run(index);
      return { nodes, entries };
    })();
  }

  async acquireLease(holder: string, ttlMs: number, nowMs: number): Promise<Lease> {
    return this.db.transaction((): Lease => {
      this.stmts.takeLease.run(holder, nowMs + ttlMs, nowMs);
      const r = this.stmts.readLease.get() as { holder: string; expires_at: number };
      return { holder: r.holder, expiresAt: r.expires_at };
    }).immediate();
  }

  async releaseLease(holder: string): Promise<void> {
    this.stmts.releaseLease.run(holder);
  }

  /** Moves the WAL into the main file and truncates it (used before copying the file). */
  checkpoint(): void {
    this.db.pragma('wal_checkpoint(TRUNCATE)');
  }

  async close(): Promise<void> {
    this.db.close();
  }
}
