/**
 * Tiled transparency logs (c2sp.org/tlog-tiles): the paths of hash tiles and entry bundles, their
 * byte formats, and the mapping from the complete subtrees that `merkle.ts` reads to the tiles
 * that hold them.
 *
 * A tile at tile level T, index N, holds up to 256 consecutive Merkle tree hashes at tree level
 * 8T: hash i is MTH(D[(N * 256 + i) * 256^T : (N * 256 + i + 1) * 256^T]) (tlog-tiles "Merkle
 * Tree"). A complete subtree at tree level 8T + s (0 <= s < 8) is rebuilt from 2^s consecutive
 * hashes of one tile.
 */
import { concatBytes } from '../../crypto/bytes.js';
import { malformed } from './errors.js';
import { HASH_SIZE, subtreeReaderFromLeafHashes } from './merkle.js';
import type { SubtreeHashReader, SubtreeId } from './merkle.js';

/** tlog-tiles "Merkle Tree": a full tile is 256 hashes wide (8,192 bytes)... */
export const TILE_WIDTH = 256;
/** ...so it spans 8 levels of the tree. */
export const TILE_HEIGHT = 8;
/** tlog-tiles "Merkle Tree": `<L>` is between 0 and 63. */
export const MAX_TILE_LEVEL = 63;
/** tlog-tiles "Log entries": entries are uint16 length-prefixed. */
export const MAX_ENTRY_SIZE = 0xffff;

/** A hash tile: tile level, index within the level, and width (1..255 partial, 256 full). */
export interface HashTileId {
  readonly level: number;
  readonly index: number;
  readonly width: number;
}

/** What a path under `<prefix>/tile/` names: a hash tile or an entry bundle. */
export type TilePath =
  | { readonly kind: 'hash'; readonly level: number; readonly index: number; readonly width: number }
  | { readonly kind: 'entries'; readonly index: number; readonly width: number };

function isIndex(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0;
}

function checkWidth(width: number): void {
  if (!Number.isInteger(width) || width < 1 || width > TILE_WIDTH) throw malformed('tile width must be 1..256');
}

// --- paths ---

/**
 * tlog-tiles "Merkle Tree", `<N>`: the index in zero-padded 3-digit path elements, all but the
 * last prefixed with `x` (1234067 is `x001/x234/067`).
 */
export function formatTileIndex(index: number): string {
  if (!isIndex(index)) throw malformed('tile index must be a safe non-negative integer');
  let digits = String(index);
  digits = digits.padStart(Math.ceil(digits.length / 3) * 3, '0');
  const groups: string[] = [];
  for (let i = 0; i < digits.length; i += 3) groups.push(digits.slice(i, i + 3));
  return groups.map((g, i) => (i < groups.length - 1 ? 'x' + g : g)).join('/');
}

/** Parses `<N>` strictly: the canonical form only (no extra leading `x000` elements). */
export function parseTileIndex(s: string): number {
  const groups = s.split('/');
  let digits = '';
  groups.forEach((g, i) => {
    const last = i === groups.length - 1;
    if (!(last ? /^[0-9]{3}$/ : /^x[0-9]{3}$/).test(g)) throw malformed('invalid tile index element');
    digits += last ? g : g.slice(1);
  });
  const index = Number(digits);
  if (!isIndex(index) || formatTileIndex(index) !== s) throw malformed('non-canonical or too large tile index');
  return index;
}

/**
 * tlog-tiles: `tile/<L>/<N>[.p/<W>]` for hash tiles and `tile/entries/<N>[.p/<W>]` for entry
 * bundles, relative to the log's prefix. Width 256 is a full tile and has no `.p/` suffix.
 */
export function formatTilePath(t: TilePath): string {
  checkWidth(t.width);
  const suffix = t.width === TILE_WIDTH ? '' : `.p/${t.width}`;
  if (t.kind === 'entries') return `tile/entries/${formatTileIndex(t.index)}${suffix}`;
  if (!Number.isInteger(t.level) || t.level < 0 || t.level > MAX_TILE_LEVEL) throw malformed('tile level must be 0..63');
  return `tile/${t.level}/${formatTileIndex(t.index)}${suffix}`;
}

/** Parses a path written by `formatTilePath`; anything else is `Malformed`. */
export function parseTilePath(path: string): TilePath {
  const m = /^tile\/(entries|0|[1-9][0-9]?)\/([x0-9/]+?)(?:\.p\/([1-9][0-9]{0,2}))?$/.exec(path);
  if (!m) throw malformed('not a tile path');
  const [, levelText, indexText, widthText] = m as unknown as [string, string, string, string | undefined];
  const index = parseTileIndex(indexText);
  const width = widthText === undefined ? TILE_WIDTH : Number(widthText);
  // A full tile has no `.p/` suffix, so a partial width is 1..255.
  if (widthText !== undefined && width >= TILE_WIDTH) throw malformed('partial tile width must be 1..255');
  if (levelText === 'entries') return { kind: 'entries', index, width };
  const level = Number(levelText);
  if (level > MAX_TILE_LEVEL) throw malformed('tile level must be 0..63');
  return { kind: 'hash', level, index, width };
}

// --- contents ---

/** A hash tile's bytes: its hashes concatenated. */
export function encodeHashTile(hashes: readonly Uint8Array[]): Uint8Array {
  checkWidth(hashes.length);
  for (const h of hashes) if (h.length !== HASH_SIZE) throw malformed(`tile hash is not ${HASH_SIZE} bytes`);
  return concatBytes(...hashes);
}

/** Splits a hash tile into its hashes: 1..256 of them, exactly `width` if given. */
export function parseHashTile(bytes: Uint8Array, width?: number): Uint8Array[] {
  if (bytes.length === 0 || bytes.length % HASH_SIZE !== 0) throw malformed('tile is not a whole number of hashes');
  const n = bytes.length / HASH_SIZE;
  if (n > TILE_WIDTH) throw malformed('tile has more than 256 hashes');
  if (width !== undefined && n !== width) throw malformed('tile does not have the expected width');
  const out: Uint8Array[] = [];
  for (let i = 0; i < n; i++) out.push(bytes.slice(i * HASH_SIZE, (i + 1) * HASH_SIZE));
  return out;
}

/** tlog-tiles "Log entries": an entry bundle, each entry as a big-endian uint16 length and its bytes. */
export function encodeEntryBundle(entries: readonly Uint8Array[]): Uint8Array {
  checkWidth(entries.length);
  const parts: Uint8Array[] = [];
  for (const e of entries) {
    if (e.length > MAX_ENTRY_SIZE) throw malformed('entry longer than 65535 bytes');
    parts.push(Uint8Array.of(e.length >> 8, e.length & 0xff), e);
  }
  return concatBytes(...parts);
}

/** Splits an entry bundle: 1..256 entries, exactly `width` if given, no trailing bytes. */
export function parseEntryBundle(bytes: Uint8Array, width?: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let offset = 0;
  while (offset < bytes.length) {
    if (out.length === TILE_WIDTH) throw malformed('entry bundle has more than 256 entries');
    if (offset + 2 > bytes.length) throw malformed('truncated entry length');
    const n = (bytes[offset]! << 8) | bytes[offset + 1]!;
    offset += 2;
    if (offset + n > bytes.length) throw malformed('truncated entry');
    out.push(bytes.slice(offset, offset + n));
    offset += n;
  }
  if (out.length === 0) throw malformed('empty entry bundle');
  if (width !== undefined && out.length !== width) throw malformed('entry bundle does not have the expected width');
  return out;
}

// --- tiles of a tree ---

/**
 * The width of tile (tileLevel, tileIndex) in a tree of `treeSize` leaves: 256 if full, 1..255
 * if partial, 0 if the tree has no such tile yet. tlog-tiles "Partial Tiles": the last tile at
 * level l has floor(s / 256^l) mod 256 hashes. The same holds for entry bundles with level 0.
 */
export function tileWidth(tileLevel: number, tileIndex: number, treeSize: number): number {
  if (!isIndex(tileLevel) || !isIndex(tileIndex) || !isIndex(treeSize)) throw new RangeError('tile coordinates out of range');
  let hashes = treeSize; // hashes at tree level 8 * tileLevel
  for (let l = 0; l < tileLevel && hashes > 0; l++) hashes = Math.floor(hashes / TILE_WIDTH);
  return Math.max(0, Math.min(TILE_WIDTH, hashes - tileIndex * TILE_WIDTH));
}

/** Where a complete subtree lives: `count` hashes from `offset` in tile (tileLevel, tileIndex). */
export interface SubtreeInTile {
  readonly tileLevel: number;
  readonly tileIndex: number;
  readonly offset: number;
  readonly count: number;
}

export function tileForSubtree(level: number, index: number): SubtreeInTile {
  if (!isIndex(level) || !isIndex(index)) throw new RangeError('subtree coordinates out of range');
  const tileLevel = Math.floor(level / TILE_HEIGHT);
  const count = 2 ** (level - tileLevel * TILE_HEIGHT);
  const first = index * count;
  if (!isIndex(first)) throw new RangeError('subtree coordinates out of range');
  return { tileLevel, tileIndex: Math.floor(first / TILE_WIDTH), offset: first % TILE_WIDTH, count };
}

/** The hash of a complete subtree, from the hashes of the tile that holds it. */
export function subtreeHashFromTile(tileHashes: readonly Uint8Array[], where: SubtreeInTile): Uint8Array {
  const slice = tileHashes.slice(where.offset, where.offset + where.count);
  if (slice.length !== where.count) throw new RangeError('tile is too narrow for this subtree');
  return subtreeReaderFromLeafHashes(slice)(Math.log2(where.count), 0);
}

/**
 * The hash tiles (with their widths in the tree of `treeSize`) that hold the given complete
 * subtrees: fetch these, then answer `subtreeReaderFromTiles` from memory.
 */
export function tilesForSubtrees(subtrees: readonly SubtreeId[], treeSize: number): HashTileId[] {
  const out = new Map<string, HashTileId>();
  for (const s of subtrees) {
    const t = tileForSubtree(s.level, s.index);
    const width = tileWidth(t.tileLevel, t.tileIndex, treeSize);
    if (t.offset + t.count > width) throw new RangeError('subtree is not complete in this tree');
    out.set(`${t.tileLevel}/${t.tileIndex}`, { level: t.tileLevel, index: t.tileIndex, width });
  }
  return [...out.values()];
}

/**
 * A `SubtreeHashReader` for `merkle.ts` over a tlog-tiles store, for the tree of `treeSize`
 * leaves: `readTile` returns the hashes of tile (level, index) at the given width, the full tile
 * or the partial one that the tree's checkpoint implies.
 */
export function subtreeReaderFromTiles(
  treeSize: number,
  readTile: (tile: HashTileId) => readonly Uint8Array[],
): SubtreeHashReader {
  const cache = new Map<string, readonly Uint8Array[]>();
  return (level, index) => {
    const t = tileForSubtree(level, index);
    const width = tileWidth(t.tileLevel, t.tileIndex, treeSize);
    if (t.offset + t.count > width) throw new RangeError('subtree is not complete in this tree');
    const key = `${t.tileLevel}/${t.tileIndex}`;
    let hashes = cache.get(key);
    if (hashes === undefined) {
      hashes = readTile({ level: t.tileLevel, index: t.tileIndex, width });
      if (hashes.length !== width) throw new RangeError('tile store returned a tile of the wrong width');
      cache.set(key, hashes);
    }
    return subtreeHashFromTile(hashes, t);
  };
}
