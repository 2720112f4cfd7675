import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { utf8 } from '../../src/crypto/bytes.js';
import { ProtocolError } from '../../src/protocol/errors.js';
import {
  TILE_WIDTH,
  consistencyProof,
  consistencyProofSubtrees,
  encodeEntryBundle,
  encodeHashTile,
  formatTileIndex,
  formatTilePath,
  inclusionProof,
  inclusionProofSubtrees,
  leafHash,
  nodeHash,
  parseEntryBundle,
  parseHashTile,
  parseTileIndex,
  parseTilePath,
  rootHash,
  rootHashSubtrees,
  subtreeReaderFromTiles,
  tileForSubtree,
  tileWidth,
  tilesForSubtrees,
  verifyConsistency,
  verifyInclusion,
} from '../../src/protocol/tlog/index.js';
import type { HashTileId, TilePath } from '../../src/protocol/tlog/index.js';

function expectMalformed(e: unknown): void {
  if (!(e instanceof ProtocolError && e.code === 'Malformed')) throw new Error(`unexpected error: ${String(e)}`);
}

describe('tile paths (tlog-tiles "Merkle Tree", "Log entries")', () => {
  it.each([
    [0, '000'],
    [7, '007'],
    [999, '999'],
    [1000, 'x001/000'],
    [1234067, 'x001/x234/067'],
    [Number.MAX_SAFE_INTEGER, 'x009/x007/x199/x254/x740/991'],
  ])('index %d is %s', (n, s) => {
    expect(formatTileIndex(n)).toBe(s);
    expect(parseTileIndex(s)).toBe(n);
  });

  it.each([
    [{ kind: 'hash', level: 0, index: 1234067, width: 256 }, 'tile/0/x001/x234/067'],
    [{ kind: 'hash', level: 1, index: 0, width: 17 }, 'tile/1/000.p/17'],
    [{ kind: 'hash', level: 63, index: 5, width: 255 }, 'tile/63/005.p/255'],
    [{ kind: 'entries', index: 1000, width: 256 }, 'tile/entries/x001/000'],
    [{ kind: 'entries', index: 273, width: 112 }, 'tile/entries/273.p/112'],
  ] as [TilePath, string][])('%o is %s', (t, path) => {
    expect(formatTilePath(t)).toBe(path);
    expect(parseTilePath(path)).toEqual(t);
  });

  it.each([
    'tile/0/x000/001',
    'tile/0/1',
    'tile/0/0001',
    'tile/0/x001',
    'tile/0/001/002',
    'tile/00/000',
    'tile/64/000',
    'tile/-1/000',
    'tile/0/000.p/0',
    'tile/0/000.p/256',
    'tile/0/000.p/01',
    'tile/0/000.p/',
    'tile/0/000/',
    'tile/entries/000.p/256',
    'tile/entry/000',
    '/tile/0/000',
    'tile/0/000 ',
    'tile/0/x1000/000',
    'tile/0/x999/x999/x999/x999/x999/999',
  ])('refuses %s', (path) => {
    expect(() => parseTilePath(path)).toThrow(ProtocolError);
  });

  it('round-trips and never crashes on random paths', () => {
    const pathArb: fc.Arbitrary<TilePath> = fc.oneof(
      fc.record({
        kind: fc.constant('hash' as const),
        level: fc.integer({ min: 0, max: 63 }),
        index: fc.maxSafeNat(),
        width: fc.integer({ min: 1, max: 256 }),
      }),
      fc.record({ kind: fc.constant('entries' as const), index: fc.maxSafeNat(), width: fc.integer({ min: 1, max: 256 }) }),
    );
    fc.assert(
      fc.property(pathArb, (t) => {
        expect(parseTilePath(formatTilePath(t))).toEqual(t);
      }),
      { numRuns: 300 },
    );
    const noise = fc.oneof(
      fc.string({ unit: 'binary' }),
      fc.array(fc.constantFrom('tile/', 'entries/', '0/', 'x', '0', '1', '9', '/', '.p/', '25', '6'), { maxLength: 12 }).map((a) => a.join('')),
    );
    fc.assert(
      fc.property(noise, (s) => {
        try {
          const t = parseTilePath(s);
          expect(formatTilePath(t)).toBe(s); // whatever parses is canonical
        } catch (e) {
          expectMalformed(e);
        }
      }),
      { numRuns: 1000 },
    );
  });
});

describe('tile contents', () => {
  it('hash tiles: 1..256 hashes of 32 bytes', () => {
    const hashes = Array.from({ length: 3 }, (_, i) => leafHash(Uint8Array.of(i)));
    const bytes = encodeHashTile(hashes);
    expect(bytes.length).toBe(96);
    expect(parseHashTile(bytes)).toEqual(hashes);
    expect(parseHashTile(bytes, 3)).toEqual(hashes);
    expect(() => parseHashTile(bytes, 4)).toThrow(ProtocolError);
    expect(() => parseHashTile(bytes.subarray(1))).toThrow(ProtocolError);
    expect(() => parseHashTile(new Uint8Array(0))).toThrow(ProtocolError);
    expect(() => parseHashTile(new Uint8Array(257 * 32))).toThrow(ProtocolError);
    expect(parseHashTile(new Uint8Array(256 * 32)).length).toBe(256);
    expect(() => encodeHashTile([])).toThrow(ProtocolError);
    expect(() => encodeHashTile([new Uint8Array(31)])).toThrow(ProtocolError);
  });

  it('entry bundles: uint16 big-endian length-prefixed entries', () => {
    const entries = [new Uint8Array(0), utf8('a'), new Uint8Array(300).fill(7)];
    const bytes = encodeEntryBundle(entries);
    expect(Array.from(bytes.subarray(0, 5))).toEqual([0, 0, 0, 1, 0x61]);
    expect(Array.from(bytes.subarray(5, 7))).toEqual([1, 44]);
    expect(parseEntryBundle(bytes)).toEqual(entries);
    expect(parseEntryBundle(bytes, 3)).toEqual(entries);
    expect(() => parseEntryBundle(bytes, 2)).toThrow(ProtocolError);
    expect(() => parseEntryBundle(bytes.subarray(0, bytes.length - 1))).toThrow(ProtocolError);
    expect(() => parseEntryBundle(Uint8Array.of(...bytes, 0))).toThrow(ProtocolError);
    expect(() => parseEntryBundle(new Uint8Array(0))).toThrow(ProtocolError);
    expect(() => parseEntryBundle(new Uint8Array(257 * 2))).toThrow(ProtocolError);
    expect(parseEntryBundle(new Uint8Array(256 * 2)).length).toBe(256);
    expect(parseEntryBundle(encodeEntryBundle([new Uint8Array(0xffff)]))[0]!.length).toBe(0xffff);
    expect(() => encodeEntryBundle([new Uint8Array(0x10000)])).toThrow(ProtocolError);
    expect(() => encodeEntryBundle([])).toThrow(ProtocolError);
  });

  it('round-trips and never crashes on random bytes', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 600 }), { minLength: 1, maxLength: 20 }), (entries) => {
        expect(parseEntryBundle(encodeEntryBundle(entries))).toEqual(entries);
      }),
      { numRuns: 200 },
    );
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ minLength: 32, maxLength: 32 }), { minLength: 1, maxLength: 256 }), (hashes) => {
        expect(parseHashTile(encodeHashTile(hashes))).toEqual(hashes);
      }),
      { numRuns: 50 },
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.option(fc.integer({ min: -1, max: 300 })), (b, w) => {
        for (const parse of [parseEntryBundle, parseHashTile]) {
          try {
            parse(b, w ?? undefined);
          } catch (e) {
            expectMalformed(e);
          }
        }
      }),
      { numRuns: 1000 },
    );
  });
});

describe('tiles of a tree', () => {
  it('the tlog-tiles example: a tree of 70,000 leaves', () => {
    expect(tileWidth(0, 272, 70000)).toBe(256);
    expect(tileWidth(0, 273, 70000)).toBe(112);
    expect(tileWidth(0, 274, 70000)).toBe(0);
    expect(tileWidth(1, 0, 70000)).toBe(256);
    expect(tileWidth(1, 1, 70000)).toBe(17);
    expect(tileWidth(2, 0, 70000)).toBe(1);
    expect(tileWidth(3, 0, 70000)).toBe(0);
    // "a tree of size 256 will be represented by a full level 0 tile and a partial level 1 tile of width 1"
    expect([tileWidth(0, 0, 256), tileWidth(0, 1, 256), tileWidth(1, 0, 256)]).toEqual([256, 0, 1]);
  });

  it('locates complete subtrees in tiles', () => {
    expect(tileForSubtree(0, 1234)).toEqual({ tileLevel: 0, tileIndex: 4, offset: 210, count: 1 });
    expect(tileForSubtree(3, 33)).toEqual({ tileLevel: 0, tileIndex: 1, offset: 8, count: 8 });
    expect(tileForSubtree(8, 300)).toEqual({ tileLevel: 1, tileIndex: 1, offset: 44, count: 1 });
    expect(tileForSubtree(16, 0)).toEqual({ tileLevel: 2, tileIndex: 0, offset: 0, count: 1 });
  });

  it('proofs generated from tiles equal those from leaves, across tile boundaries', () => {
    const N = 70000;
    const leaves = Array.from({ length: N }, (_, i) => leafHash(utf8(`entry ${i}`)));
    // Complete subtree hashes by level, built once, as a log server's tile store would hold them.
    const levels: Uint8Array[][] = [leaves];
    while (levels[levels.length - 1]!.length > 1) {
      const below = levels[levels.length - 1]!;
      const above: Uint8Array[] = [];
      for (let i = 0; i + 1 < below.length; i += 2) above.push(nodeHash(below[i]!, below[i + 1]!));
      levels.push(above);
    }
    const fromLeaves = (level: number, index: number): Uint8Array => levels[level]![index]!;
    let tileReads = 0;
    // The store serves tile (L, N, W) from the tree level 8L, exactly W hashes.
    const readTile = (t: HashTileId): Uint8Array[] => {
      tileReads++;
      const row = levels[8 * t.level]!;
      const hashes = row.slice(t.index * TILE_WIDTH, t.index * TILE_WIDTH + t.width);
      expect(hashes.length).toBe(t.width);
      return parseHashTile(encodeHashTile(hashes), t.width);
    };
    const sizes = fc.integer({ min: 1, max: N });
    fc.assert(
      fc.property(sizes, sizes, fc.nat(), (a, b, r) => {
        const [m, n] = a <= b ? [a, b] : [b, a];
        const leaf = r % n;
        const tiles = subtreeReaderFromTiles(n, readTile);
        const root = rootHash(n, tiles);
        expect(root).toEqual(rootHash(n, fromLeaves));
        const ip = inclusionProof(leaf, n, tiles);
        expect(ip).toEqual(inclusionProof(leaf, n, fromLeaves));
        verifyInclusion(leaf, n, leaves[leaf]!, ip, root);
        const cp = consistencyProof(m, n, tiles);
        expect(cp).toEqual(consistencyProof(m, n, fromLeaves));
        verifyConsistency(m, n, cp, rootHash(m, subtreeReaderFromTiles(m, readTile)), root);
        // The tiles a proof needs can be listed up front, for stores with asynchronous reads.
        const needed = tilesForSubtrees(
          [...inclusionProofSubtrees(leaf, n), ...consistencyProofSubtrees(m, n), ...rootHashSubtrees(n)],
          n,
        );
        for (const t of needed) expect(t.width).toBe(tileWidth(t.level, t.index, n));
        const fetched = new Map(needed.map((t) => [`${t.level}/${t.index}`, readTile(t)]));
        const offline = subtreeReaderFromTiles(n, (t) => {
          const got = fetched.get(`${t.level}/${t.index}`);
          if (got === undefined) throw new Error(`tile ${t.level}/${t.index} was not listed`);
          return got;
        });
        expect(inclusionProof(leaf, n, offline)).toEqual(ip);
        expect(consistencyProof(m, n, offline)).toEqual(cp);
        expect(rootHash(n, offline)).toEqual(root);
      }),
      { numRuns: 60, examples: [[256, 256, 255], [255, 257, 256], [65535, 65537, 65536], [1, 70000, 69999], [69999, 70000, 0]] },
    );
    expect(tileReads).toBeGreaterThan(0);
  });

  it('refuses subtrees that are not complete in the tree', () => {
    const read = subtreeReaderFromTiles(10, () => {
      throw new Error('not reached');
    });
    expect(() => read(4, 0)).toThrow(RangeError);
    expect(() => tilesForSubtrees([{ level: 0, index: 10 }], 10)).toThrow(RangeError);
  });
});
