/**
 * Merkle tree hashing, proof verification and proof generation of RFC 6962 section 2.1 as
 * restated in RFC 9162 section 2.1, with SHA-256 (the only hash tlog-tiles allows).
 *
 * Tree sizes and indexes are JavaScript numbers and must be safe integers (below 2^53); RFC 9162
 * allows 64 bits, and larger values are rejected rather than rounded.
 *
 * Proof generation reads the tree through one function, `SubtreeHashReader`, that returns the
 * hash of a *complete* subtree: level L, index N is MTH(D[N * 2^L : (N + 1) * 2^L]). That is what
 * a tlog-tiles store holds (a tile at tile level T holds the complete subtrees at level 8T; the
 * levels in between are rebuilt from the tile, see `tiles.ts`). The hashes of incomplete subtrees
 * on the right edge of a tree are never stored; they are computed here from complete ones.
 */
import { bytesEqual } from '../../crypto/bytes.js';
import { sha256 } from '../../crypto/sha256.js';
import { TlogError } from './errors.js';

/** SHA-256 output size: every leaf hash and proof node has exactly this length. */
export const HASH_SIZE = 32;

const LEAF_PREFIX = Uint8Array.of(0x00);
const NODE_PREFIX = Uint8Array.of(0x01);

/** RFC 9162 section 2.1.1: the hash of a leaf, SHA-256(0x00 || data). */
export function leafHash(data: Uint8Array): Uint8Array {
  return sha256(LEAF_PREFIX, data);
}

/** RFC 9162 section 2.1.1: the hash of an interior node, SHA-256(0x01 || left || right). */
export function nodeHash(left: Uint8Array, right: Uint8Array): Uint8Array {
  return sha256(NODE_PREFIX, left, right);
}

/** RFC 9162 section 2.1.1: the root of the empty tree, SHA-256 of the empty string. */
export function emptyRoot(): Uint8Array {
  return sha256(new Uint8Array(0));
}

/** A complete subtree: the 2^level leaves starting at leaf index * 2^level. */
export interface SubtreeId {
  readonly level: number;
  readonly index: number;
}

/** Returns the hash of the complete subtree (level, index); see the module comment. */
export type SubtreeHashReader = (level: number, index: number) => Uint8Array;

// --- integer helpers, exact for safe integers (no 32-bit bitwise operators) ---

function isSize(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0;
}

function isPowerOfTwo(n: number): boolean {
  let k = 1;
  while (k < n) k *= 2;
  return k === n;
}

function log2(n: number): number {
  let level = 0;
  for (let k = 1; k < n; k *= 2) level++;
  return level;
}

/** RFC 9162 section 2.1.1: k, the largest power of two smaller than n (n > 1). */
function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

function isOdd(n: number): boolean {
  return n % 2 === 1;
}

function half(n: number): number {
  return Math.floor(n / 2);
}

// --- tree hashes ---

/**
 * MTH(D[start:end]) from complete subtrees. `start` is a multiple of the largest power of two
 * not above end - start, which holds for every range the RFC 9162 recursion visits: the left
 * part is complete and the right part starts at a multiple of k.
 */
function rangeHash(start: number, end: number, read: SubtreeHashReader): Uint8Array {
  const n = end - start;
  if (isPowerOfTwo(n)) {
    if (start % n !== 0) throw new Error('invariant: unaligned subtree');
    const h = read(log2(n), start / n);
    if (h.length !== HASH_SIZE) throw new RangeError(`subtree hash must be ${HASH_SIZE} bytes`);
    return h;
  }
  const k = splitPoint(n);
  return nodeHash(rangeHash(start, start + k, read), rangeHash(start + k, end, read));
}

/** RFC 9162 section 2.1.1: the root of a tree of `treeSize` leaves, read as complete subtrees. */
export function rootHash(treeSize: number, read: SubtreeHashReader): Uint8Array {
  if (!isSize(treeSize)) throw new RangeError('tree size must be a safe non-negative integer');
  return treeSize === 0 ? emptyRoot() : rangeHash(0, treeSize, read);
}

/** A `SubtreeHashReader` over all the leaf hashes of a tree held in memory (for tests and tools). */
export function subtreeReaderFromLeafHashes(leafHashes: readonly Uint8Array[]): SubtreeHashReader {
  const read = (level: number, index: number): Uint8Array => {
    if (level === 0) {
      const h = leafHashes[index];
      if (h === undefined) throw new RangeError('leaf index out of range');
      if (h.length !== HASH_SIZE) throw new RangeError(`leaf hash must be ${HASH_SIZE} bytes`);
      return h;
    }
    return nodeHash(read(level - 1, 2 * index), read(level - 1, 2 * index + 1));
  };
  return read;
}

/** RFC 9162 section 2.1.1: MTH of a list of leaf hashes (already SHA-256(0x00 || d)). */
export function rootFromLeafHashes(leafHashes: readonly Uint8Array[]): Uint8Array {
  return rootHash(leafHashes.length, subtreeReaderFromLeafHashes(leafHashes));
}

// --- proof generation (for the log server) ---

/**
 * RFC 9162 section 2.1.3.1: the inclusion proof PATH(m, D[n]) of leaf `leafIndex` in the tree of
 * size `treeSize`, ordered from the leaf's sibling up to the child of the root.
 */
export function inclusionProof(leafIndex: number, treeSize: number, read: SubtreeHashReader): Uint8Array[] {
  if (!isSize(leafIndex) || !isSize(treeSize) || leafIndex >= treeSize) {
    throw new RangeError('inclusion proof needs 0 <= leafIndex < treeSize');
  }
  const out: Uint8Array[] = [];
  // PATH(m, D[start:end]): PATH(m, D[0:k]) : MTH(D[k:n]) if m < k, else PATH(m - k, D[k:n]) : MTH(D[0:k]).
  const path = (m: number, start: number, end: number): void => {
    const n = end - start;
    if (n === 1) return;
    const k = splitPoint(n);
    if (m < k) {
      path(m, start, start + k);
      out.push(rangeHash(start + k, end, read));
    } else {
      path(m - k, start + k, end);
      out.push(rangeHash(start, start + k, read));
    }
  };
  path(leafIndex, 0, treeSize);
  return out;
}

/**
 * RFC 9162 section 2.1.4.1: the consistency proof PROOF(m, D[n]) between the trees of sizes
 * `size1` = m and `size2` = n. The proof is empty when the sizes are equal. size1 = 0 is refused,
 * as its verification is (see `verifyConsistency`).
 */
export function consistencyProof(size1: number, size2: number, read: SubtreeHashReader): Uint8Array[] {
  if (!isSize(size1) || !isSize(size2) || size1 === 0 || size1 > size2) {
    throw new RangeError('consistency proof needs 0 < size1 <= size2');
  }
  const out: Uint8Array[] = [];
  // SUBPROOF(m, D[start:end], b), with m counted from start.
  const subproof = (m: number, start: number, end: number, b: boolean): void => {
    const n = end - start;
    if (m === n) {
      if (!b) out.push(rangeHash(start, end, read));
      return;
    }
    const k = splitPoint(n);
    if (m <= k) {
      subproof(m, start, start + k, b);
      out.push(rangeHash(start + k, end, read));
    } else {
      subproof(m - k, start + k, end, false);
      out.push(rangeHash(start, start + k, read));
    }
  };
  subproof(size1, 0, size2, true);
  return out;
}

function recordingReader(): { read: SubtreeHashReader; nodes: SubtreeId[] } {
  const nodes: SubtreeId[] = [];
  const seen = new Set<string>();
  const zero = new Uint8Array(HASH_SIZE);
  const read: SubtreeHashReader = (level, index) => {
    const key = `${level}/${index}`;
    if (!seen.has(key)) {
      seen.add(key);
      nodes.push({ level, index });
    }
    return zero;
  };
  return { read, nodes };
}

/**
 * The complete subtrees `inclusionProof` will read, so that a store with asynchronous reads (such
 * as tiles fetched over the network) can fetch them all first and then answer from memory.
 */
export function inclusionProofSubtrees(leafIndex: number, treeSize: number): SubtreeId[] {
  const r = recordingReader();
  inclusionProof(leafIndex, treeSize, r.read);
  return r.nodes;
}

/** The complete subtrees `consistencyProof` will read; see `inclusionProofSubtrees`. */
export function consistencyProofSubtrees(size1: number, size2: number): SubtreeId[] {
  const r = recordingReader();
  consistencyProof(size1, size2, r.read);
  return r.nodes;
}

/** The complete subtrees `rootHash` will read; see `inclusionProofSubtrees`. */
export function rootHashSubtrees(treeSize: number): SubtreeId[] {
  const r = recordingReader();
  rootHash(treeSize, r.read);
  return r.nodes;
}

// --- proof verification (for clients, witnesses and auditors) ---

function checkProofNodes(proof: readonly Uint8Array[]): void {
  for (const p of proof) {
    if (p.length !== HASH_SIZE) throw new TlogError('InvalidProof', `proof node is not ${HASH_SIZE} bytes`);
  }
}

/**
 * RFC 9162 section 2.1.3.2, steps 1 to 4: the root that an inclusion proof leads to. Throws
 * `InvalidProof` if the proof cannot be a proof for this index and size (index out of range, a
 * hash that is not 32 bytes, too many or too few nodes).
 */
export function rootFromInclusionProof(
  leafIndex: number,
  treeSize: number,
  leaf: Uint8Array,
  proof: readonly Uint8Array[],
): Uint8Array {
  if (!isSize(leafIndex) || !isSize(treeSize)) throw new TlogError('InvalidProof', 'index or size out of range');
  // Step 1.
  if (leafIndex >= treeSize) throw new TlogError('InvalidProof', 'leaf index is not below the tree size');
  if (leaf.length !== HASH_SIZE) throw new TlogError('InvalidProof', `leaf hash is not ${HASH_SIZE} bytes`);
  checkProofNodes(proof);
  // Step 2.
  let fn = leafIndex;
  let sn = treeSize - 1;
  // Step 3.
  let r = leaf;
  // Step 4.
  for (const p of proof) {
    // 4a: the path would go above the root.
    if (sn === 0) throw new TlogError('InvalidProof', 'inclusion proof is too long');
    if (isOdd(fn) || fn === sn) {
      // 4b: p is a left sibling (or fn is the last node of its level and has no right sibling).
      r = nodeHash(p, r);
      while (!isOdd(fn) && fn !== 0) {
        fn = half(fn);
        sn = half(sn);
      }
    } else {
      r = nodeHash(r, p);
    }
    // 4c.
    fn = half(fn);
    sn = half(sn);
  }
  // Step 5, second half: the path must end at the root.
  if (sn !== 0) throw new TlogError('InvalidProof', 'inclusion proof is too short');
  return r;
}

/**
 * RFC 9162 section 2.1.3.2: verifies that `leaf` (a leaf hash, SHA-256(0x00 || d)) is at
 * `leafIndex` in the tree of size `treeSize` whose root is `root`. Throws `InvalidProof` or
 * `RootMismatch`.
 */
export function verifyInclusion(
  leafIndex: number,
  treeSize: number,
  leaf: Uint8Array,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): void {
  const r = rootFromInclusionProof(leafIndex, treeSize, leaf, proof);
  // Step 5.
  if (!bytesEqual(r, root)) throw new TlogError('RootMismatch', 'inclusion proof does not lead to the root');
}

/**
 * RFC 9162 section 2.1.4.2: verifies that the tree of size `size2` with root `root2` extends the
 * tree of size `size1` with root `root1`. Throws `InvalidProof` or `RootMismatch`.
 *
 * The RFC's algorithm assumes 0 < size1 < size2. Around it, as in transparency-dev/merkle (whose
 * vectors this follows): size1 > size2 is an error; size1 = 0 is always an error (an empty tree
 * is consistent with anything, so such a "proof" proves nothing and a caller asking for one has a
 * bug); and for size1 = size2 the proof must be empty and the roots equal (RFC 9162 section
 * 2.1.4.1: SUBPROOF(m, D[m], true) is empty).
 */
export function verifyConsistency(
  size1: number,
  size2: number,
  proof: readonly Uint8Array[],
  root1: Uint8Array,
  root2: Uint8Array,
): void {
  if (!isSize(size1) || !isSize(size2)) throw new TlogError('InvalidProof', 'tree size out of range');
  if (size1 > size2) throw new TlogError('InvalidProof', 'size1 is larger than size2');
  if (size1 === 0) throw new TlogError('InvalidProof', 'consistency with the empty tree proves nothing');
  if (size1 === size2) {
    if (proof.length !== 0) throw new TlogError('InvalidProof', 'proof between equal sizes must be empty');
    if (!bytesEqual(root1, root2)) throw new TlogError('RootMismatch', 'equal sizes with different roots');
    return;
  }
  // Step 1.
  if (proof.length === 0) throw new TlogError('InvalidProof', 'consistency proof is empty');
  checkProofNodes(proof);
  // Step 2: if size1 is a power of two, its root is a node of the second tree and is not sent.
  const path = isPowerOfTwo(size1) ? [root1, ...proof] : proof;
  // Step 3.
  let fn = size1 - 1;
  let sn = size2 - 1;
  // Step 4.
  while (isOdd(fn)) {
    fn = half(fn);
    sn = half(sn);
  }
  // Step 5.
  let fr = path[0]!;
  let sr = fr;
  // Step 6.
  for (let i = 1; i < path.length; i++) {
    const c = path[i]!;
    // 6a.
    if (sn === 0) throw new TlogError('InvalidProof', 'consistency proof is too long');
    if (isOdd(fn) || fn === sn) {
      // 6b.
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      while (!isOdd(fn) && fn !== 0) {
        fn = half(fn);
        sn = half(sn);
      }
    } else {
      sr = nodeHash(sr, c);
    }
    // 6c.
    fn = half(fn);
    sn = half(sn);
  }
  // Step 7.
  if (sn !== 0) throw new TlogError('InvalidProof', 'consistency proof is too short');
  if (!bytesEqual(fr, root1)) throw new TlogError('RootMismatch', 'consistency proof does not lead to root1');
  if (!bytesEqual(sr, root2)) throw new TlogError('RootMismatch', 'consistency proof does not lead to root2');
}
