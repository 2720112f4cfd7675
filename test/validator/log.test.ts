/**
 * The audit log's tlog-tiles storage (c2sp.org/tlog-tiles): tiles hold exactly the hashes the
 * spec defines, partial tiles are prefixes of full ones, roots and proofs match the in-memory
 * RFC 9162 tree, and proofs computed from tiles read "remotely" are the same.
 */
import { describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { utf8 } from '../../src/crypto/bytes.js';
import {
  HASH_SIZE,
  consistencyProof,
  consistencyProofFromTiles,
  inclusionProof,
  inclusionProofFromTiles,
  leafHash,
  parseEntryBundle,
  parseHashTile,
  rootFromLeafHashes,
  rootHashFromTiles,
  subtreeReaderFromLeafHashes,
  tileWidth,
  verifyConsistency,
  verifyInclusion,
} from '../../src/protocol/tlog/index.js';
import { TileLog } from '../../src/validator/log.js';

function entry(i: number): Uint8Array {
  return utf8(`entry number ${i}\n`);
}

function build(n: number): { log: TileLog; leaves: Uint8Array[]; db: Database.Database } {
  const db = new Database(':memory:');
  const log = new TileLog(db);
  const leaves: Uint8Array[] = [];
  db.transaction(() => {
    for (let i = 0; i < n; i++) {
      expect(log.append(entry(i))).toBe(i);
      leaves.push(leafHash(entry(i)));
    }
  })();
  return { log, leaves, db };
}

describe('tiles', () => {
  const { log, leaves } = build(600);

  it('level-0 tiles are the leaf hashes, level-1 hashes are MTHs of full level-0 tiles', () => {
    expect(parseHashTile(log.tile(0, 0, 256, 600)!)).toEqual(leaves.slice(0, 256));
    expect(parseHashTile(log.tile(0, 2, 88, 600)!)).toEqual(leaves.slice(512, 600));
    const level1 = parseHashTile(log.tile(1, 0, 2, 600)!);
    expect(level1).toEqual([rootFromLeafHashes(leaves.slice(0, 256)), rootFromLeafHashes(leaves.slice(256, 512))]);
  });

  it('serves any partial width a published size implies, and nothing beyond it', () => {
    expect(parseHashTile(log.tile(0, 2, 10, 600)!)).toEqual(leaves.slice(512, 522));
    expect(log.tile(0, 2, 89, 600)).toBeUndefined(); // wider than the tree
    expect(log.tile(0, 2, 50, 550)).toBeUndefined(); // wider than the published size 550 implies (38)
    expect(log.tile(0, 2, 38, 550)).toBeDefined();
    expect(log.tile(0, 3, 1, 600)).toBeUndefined(); // empty tiles are not served
    expect(log.tile(1, 0, 3, 600)).toBeUndefined();
    expect(log.tile(2, 0, 1, 600)).toBeUndefined(); // 600 < 65536: no level-2 hash yet
  });

  it('entry bundles are the entries, uint16 length-prefixed', () => {
    expect(parseEntryBundle(log.entryBundle(0, 256, 600)!, 256)).toEqual(Array.from({ length: 256 }, (_, i) => entry(i)));
    expect(parseEntryBundle(log.entryBundle(2, 3, 600)!, 3)).toEqual([entry(512), entry(513), entry(514)]);
    expect(log.entryBundle(2, 89, 600)).toBeUndefined();
    expect(log.entryBundle(3, 1, 600)).toBeUndefined();
  });

  it('roots, inclusion and consistency proofs equal the in-memory tree\'s', () => {
    for (const size of [1, 2, 3, 255, 256, 257, 511, 512, 513, 600]) {
      const root = rootFromLeafHashes(leaves.slice(0, size));
      expect(log.root(size)).toEqual(root);
      const reader = subtreeReaderFromLeafHashes(leaves.slice(0, size));
      for (const i of [0, Math.floor(size / 2), size - 1]) {
        const p = log.inclusionProof(i, size);
        expect(p).toEqual(inclusionProof(i, size, reader));
        verifyInclusion(i, size, leaves[i]!, p, root);
      }
      for (const m of [1, Math.max(1, Math.floor(size / 3)), size]) {
        const p = log.consistencyProof(m, size);
        expect(p).toEqual(consistencyProof(m, size, reader));
        verifyConsistency(m, size, p, rootFromLeafHashes(leaves.slice(0, m)), root);
      }
    }
    expect(log.consistencyProof(0, 10)).toEqual([]);
  });

  it('proofs computed from tiles read asynchronously (a remote verifier) are the same', async () => {
    const fetchTile = async (t: { level: number; index: number; width: number }) => log.tile(t.level, t.index, t.width, 600)!;
    expect(await rootHashFromTiles(600, fetchTile)).toEqual(log.root(600));
    expect(await inclusionProofFromTiles(300, 600, fetchTile)).toEqual(log.inclusionProof(300, 600));
    expect(await consistencyProofFromTiles(257, 600, fetchTile)).toEqual(log.consistencyProof(257, 600));
    // A tile of the wrong width is refused, not used.
    await expect(inclusionProofFromTiles(300, 600, async () => new Uint8Array(HASH_SIZE))).rejects.toThrow();
  });

  it('survives a restart: the size and the tiles are read back from SQLite', () => {
    const { log: l, db, leaves: lv } = build(300);
    const again = new TileLog(db);
    expect(again.size()).toBe(300);
    db.transaction(() => again.append(entry(300)))();
    expect(again.root(301)).toEqual(rootFromLeafHashes([...lv, leafHash(entry(300))]));
    expect(l.size()).toBe(300);
  });
});

describe('the spec\'s example: a tree of 70,000 entries', () => {
  it('has 273 full level-0 tiles, one of width 112, one full level-1 tile, one of width 17, one level-2 tile of width 1', () => {
    const db = new Database(':memory:');
    const log = new TileLog(db);
    db.transaction(() => {
      for (let i = 0; i < 70_000; i++) log.append(entry(i));
    })();
    const n = 70_000;
    expect(tileWidth(0, 272, n)).toBe(256);
    expect(log.tile(0, 272, 256, n)).toBeDefined();
    expect(log.tile(0, 273, 112, n)).toBeDefined();
    expect(log.tile(0, 273, 113, n)).toBeUndefined();
    expect(log.tile(1, 0, 256, n)).toBeDefined();
    expect(log.tile(1, 1, 17, n)).toBeDefined();
    expect(log.tile(1, 1, 18, n)).toBeUndefined();
    expect(log.tile(2, 0, 1, n)).toBeDefined();
    expect(log.tile(2, 0, 2, n)).toBeUndefined();
    const root = log.root(n);
    verifyInclusion(69_999, n, leafHash(entry(69_999)), log.inclusionProof(69_999, n), root);
    verifyInclusion(12_345, n, leafHash(entry(12_345)), log.inclusionProof(12_345, n), root);
    verifyConsistency(65_536, n, log.consistencyProof(65_536, n), log.root(65_536), root);
  });
});
