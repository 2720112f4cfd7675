/**
 * The audit log's storage: a tlog-tiles tree (c2sp.org/tlog-tiles) in SQLite. Entries are kept
 * one row each; hash tiles are kept as they are served, one growing blob per tile, so that a tile
 * request is one row read and a proof is a few. A tile at tile level L gains a hash when the tile
 * below it fills up, so every stored hash is the hash of a complete subtree and never changes.
 *
 * The caller runs `append` inside its own transaction (with the rows that say why the entry was
 * appended), so that the log and the validator's chain state cannot disagree after a crash.
 */
import type Database from 'better-sqlite3';
import { concatBytes } from '../crypto/bytes.js';
import {
  HASH_SIZE,
  TILE_HEIGHT,
  TILE_WIDTH,
  consistencyProof,
  encodeEntryBundle,
  inclusionProof,
  leafHash,
  nodeHash,
  rootFromLeafHashes,
  rootHash,
  subtreeReaderFromTiles,
  tileForSubtree,
  tileWidth,
} from '../protocol/tlog/index.js';
import type { HashTileId, SubtreeHashReader } from '../protocol/tlog/index.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS log_entries (idx INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS log_tiles (level INTEGER NOT NULL, idx INTEGER NOT NULL, hashes BLOB NOT NULL, PRIMARY KEY (level, idx)) WITHOUT ROWID;
`;

/** Full tiles never change; this many are kept in memory (8 KiB each). */
const FULL_TILE_CACHE = 2048;
/** Full tiles whose inner subtree hashes are kept (16 KiB each). */
const FULL_TILE_TREE_CACHE = 1024;
/** Complete subtrees in partial tiles whose hashes are kept (32 bytes each). */
const PARTIAL_SUBTREE_CACHE = 1 << 16;

export class TileLog {
  private readonly stmts;
  private treeSize: number;
  private readonly fullTiles = new Map<string, Uint8Array>();
  private readonly fullTileTrees = new Map<string, Uint8Array[][]>();
  private readonly partialSubtrees = new Map<string, Uint8Array>();

  constructor(private readonly db: Database.Database) {
    db.exec(SCHEMA);
    this.stmts = {
      count: db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM log_entries'),
      insertEntry: db.prepare<[number, Uint8Array]>('INSERT INTO log_entries (idx, data) VALUES (?, ?)'),
      entry: db.prepare<[number], { data: Buffer }>('SELECT data FROM log_entries WHERE idx = ?'),
      entries: db.prepare<[number, number], { data: Buffer }>('SELECT data FROM log_entries WHERE idx >= ? AND idx < ? ORDER BY idx'),
      tile: db.prepare<[number, number], { hashes: Buffer }>('SELECT hashes FROM log_tiles WHERE level = ? AND idx = ?'),
      putTile: db.prepare<[number, number, Uint8Array]>('INSERT INTO log_tiles (level, idx, hashes) VALUES (?, ?, ?) ON CONFLICT (level, idx) DO UPDATE SET hashes = excluded.hashes'),
    };
    this.treeSize = this.stmts.count.get()!.n;
  }

  /** The number of entries appended (the tree size; not necessarily published yet). */
  size(): number {
    return this.treeSize;
  }

  private storedTile(level: number, index: number): Uint8Array | undefined {
    const key = `${level}/${index}`;
    const cached = this.fullTiles.get(key);
    if (cached) return cached;
    const row = this.stmts.tile.get(level, index);
    if (!row) return undefined;
    const bytes = new Uint8Array(row.hashes);
    if (bytes.length === TILE_WIDTH * HASH_SIZE) {
      if (this.fullTiles.size >= FULL_TILE_CACHE) this.fullTiles.delete(this.fullTiles.keys().next().value!);
      this.fullTiles.set(key, bytes);
    }
    return bytes;
  }

  /**
   * Appends one entry; returns its index. Run inside a transaction: if it throws or the
   * transaction rolls back, call `reload()`.
   */
  append(entry: Uint8Array): number {
    const index = this.treeSize;
    this.stmts.insertEntry.run(index, entry);
    let hash = leafHash(entry);
    let position = index;
    for (let level = 0; ; level++) {
      const tileIndex = Math.floor(position / TILE_WIDTH);
      const prior = this.storedTile(level, tileIndex) ?? new Uint8Array(0);
      if (prior.length !== (position % TILE_WIDTH) * HASH_SIZE) throw new Error(`invariant: tile ${level}/${tileIndex} has ${prior.length / HASH_SIZE} hashes, expected ${position % TILE_WIDTH}`);
      const tile = concatBytes(prior, hash);
      this.stmts.putTile.run(level, tileIndex, tile);
      if (tile.length < TILE_WIDTH * HASH_SIZE) break;
      // The tile is full: its root is one more hash in the tile above.
      const hashes: Uint8Array[] = [];
      for (let i = 0; i < TILE_WIDTH; i++) hashes.push(tile.subarray(i * HASH_SIZE, (i + 1) * HASH_SIZE));
      hash = rootFromLeafHashes(hashes);
      position = tileIndex;
    }
    this.treeSize = index + 1;
    return index;
  }

  /** Appends entries in one transaction (imports, benchmarks); returns the first index. */
  appendBatch(entries: readonly Uint8Array[]): number {
    const first = this.treeSize;
    try {
      this.db.transaction(() => {
        for (const e of entries) this.append(e);
      })();
    } catch (e) {
      this.reload();
      throw e;
    }
    return first;
  }

  /** Re-reads the size after a rolled-back transaction, and drops cached tiles. */
  reload(): void {
    this.treeSize = this.stmts.count.get()!.n;
    this.fullTiles.clear();
    this.fullTileTrees.clear();
    this.partialSubtrees.clear();
  }

  /**
   * The bytes of hash tile (level, index) at `width`, if the tree of `upTo` entries has that many
   * hashes in it (a partial tile is the prefix of the tile that grows into the full one).
   */
  tile(level: number, index: number, width: number, upTo: number): Uint8Array | undefined {
    if (width < 1 || width > TILE_WIDTH || width > tileWidth(level, index, upTo)) return undefined;
    const stored = this.storedTile(level, index);
    if (!stored || stored.length < width * HASH_SIZE) return undefined;
    return stored.slice(0, width * HASH_SIZE);
  }

  /** The entry bundle `index` at `width`, if the tree of `upTo` entries holds those entries. */
  entryBundle(index: number, width: number, upTo: number): Uint8Array | undefined {
    if (width < 1 || width > TILE_WIDTH || width > tileWidth(0, index, upTo)) return undefined;
    const rows = this.stmts.entries.all(index * TILE_WIDTH, index * TILE_WIDTH + width);
    if (rows.length !== width) return undefined;
    return encodeEntryBundle(rows.map((r) => new Uint8Array(r.data)));
  }

  entry(index: number): Uint8Array | undefined {
    const row = this.stmts.entry.get(index);
    return row ? new Uint8Array(row.data) : undefined;
  }

  /**
   * Every subtree hash inside a full tile, by level within the tile (0: the tile's own 256
   * hashes, 8: its root). A full tile never changes, so this is computed once; without it each
   * proof rebuilds up to 255 hashes per node it needs.
   */
  private fullTileLevels(level: number, index: number): Uint8Array[][] {
    const key = `${level}/${index}`;
    let levels = this.fullTileTrees.get(key);
    if (levels) return levels;
    const bytes = this.storedTile(level, index);
    if (!bytes || bytes.length !== TILE_WIDTH * HASH_SIZE) throw new Error(`invariant: tile ${key} is not full`);
    levels = [[]];
    for (let i = 0; i < TILE_WIDTH; i++) levels[0]!.push(bytes.subarray(i * HASH_SIZE, (i + 1) * HASH_SIZE));
    for (let s = 1; s <= TILE_HEIGHT; s++) {
      const below = levels[s - 1]!;
      const row: Uint8Array[] = [];
      for (let i = 0; i < below.length; i += 2) row.push(nodeHash(below[i]!, below[i + 1]!));
      levels.push(row);
    }
    if (this.fullTileTrees.size >= FULL_TILE_TREE_CACHE) this.fullTileTrees.delete(this.fullTileTrees.keys().next().value!);
    this.fullTileTrees.set(key, levels);
    return levels;
  }

  private reader(size: number): SubtreeHashReader {
    const partial = subtreeReaderFromTiles(size, (t: HashTileId) => {
      const bytes = this.tile(t.level, t.index, t.width, size);
      if (!bytes) throw new Error(`invariant: tile ${t.level}/${t.index}.p/${t.width} missing`);
      const out: Uint8Array[] = [];
      for (let i = 0; i < t.width; i++) out.push(bytes.subarray(i * HASH_SIZE, (i + 1) * HASH_SIZE));
      return out;
    });
    return (level, index) => {
      const t = tileForSubtree(level, index);
      if (tileWidth(t.tileLevel, t.tileIndex, size) === TILE_WIDTH) return this.fullTileLevels(t.tileLevel, t.tileIndex)[level - t.tileLevel * TILE_HEIGHT]![t.offset / t.count]!;
      // A complete subtree's hash never changes, even inside a partial tile: remembered, the
      // right edge of the tree (always partial tiles) is not rebuilt for every proof.
      const key = `${level}/${index}`;
      let h = this.partialSubtrees.get(key);
      if (!h) {
        h = partial(level, index);
        if (this.partialSubtrees.size >= PARTIAL_SUBTREE_CACHE) this.partialSubtrees.clear();
        this.partialSubtrees.set(key, h);
      }
      return h;
    };
  }

  root(size: number): Uint8Array {
    if (size > this.treeSize) throw new RangeError('no such tree size');
    return rootHash(size, this.reader(size));
  }

  inclusionProof(index: number, size: number): Uint8Array[] {
    if (size > this.treeSize) throw new RangeError('no such tree size');
    return inclusionProof(index, size, this.reader(size));
  }

  /** RFC 9162 consistency proof; empty from size 0 (what tlog-witness sends for a first checkpoint). */
  consistencyProof(size1: number, size2: number): Uint8Array[] {
    if (size2 > this.treeSize) throw new RangeError('no such tree size');
    if (size1 === 0) return [];
    return consistencyProof(size1, size2, this.reader(size2));
  }
}
