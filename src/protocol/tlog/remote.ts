/**
 * RFC 9162 proofs computed from a tlog-tiles log that is read asynchronously (over HTTP, say):
 * the tiles a proof needs are listed first, fetched, checked for size, and the proof is then
 * computed from memory. The fetching is the caller's; nothing here does I/O.
 */
import { consistencyProof, consistencyProofSubtrees, inclusionProof, inclusionProofSubtrees, rootHash, rootHashSubtrees } from './merkle.js';
import type { SubtreeHashReader, SubtreeId } from './merkle.js';
import { parseHashTile, subtreeReaderFromTiles, tilesForSubtrees } from './tiles.js';
import type { HashTileId } from './tiles.js';

/** Returns the bytes of hash tile (level, index) at the given width (a partial tile if < 256). */
export type TileFetcher = (tile: HashTileId) => Promise<Uint8Array>;

async function readerFor(subtrees: readonly SubtreeId[], treeSize: number, fetchTile: TileFetcher): Promise<SubtreeHashReader> {
  const tiles = tilesForSubtrees(subtrees, treeSize);
  const fetched = new Map<string, Uint8Array[]>();
  await Promise.all(
    tiles.map(async (t) => {
      // parseHashTile with the width refuses a tile of the wrong size (Malformed).
      fetched.set(`${t.level}/${t.index}`, parseHashTile(await fetchTile(t), t.width));
    }),
  );
  return subtreeReaderFromTiles(treeSize, (t) => {
    const hashes = fetched.get(`${t.level}/${t.index}`);
    if (!hashes) throw new RangeError('a tile was not fetched');
    return hashes;
  });
}

/** The inclusion proof of leaf `index` in the tree of `treeSize`, from the log's tiles. */
export async function inclusionProofFromTiles(index: number, treeSize: number, fetchTile: TileFetcher): Promise<Uint8Array[]> {
  return inclusionProof(index, treeSize, await readerFor(inclusionProofSubtrees(index, treeSize), treeSize, fetchTile));
}

/** The consistency proof between sizes `size1` and `size2`, read from the tree of `size2`. */
export async function consistencyProofFromTiles(size1: number, size2: number, fetchTile: TileFetcher): Promise<Uint8Array[]> {
  return consistencyProof(size1, size2, await readerFor(consistencyProofSubtrees(size1, size2), size2, fetchTile));
}

/** The root hash of the tree of `treeSize`, from the log's tiles (to check them against a checkpoint). */
export async function rootHashFromTiles(treeSize: number, fetchTile: TileFetcher): Promise<Uint8Array> {
  return rootHash(treeSize, await readerFor(rootHashSubtrees(treeSize), treeSize, fetchTile));
}
