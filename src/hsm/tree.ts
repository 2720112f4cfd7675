/**
 * The Merkle radix tree over sealed records (DESIGN section 5, "Tree").
 *
 * A path-compressed binary (crit-bit) tree keyed by 256-bit record ids. Bit 0 is the most
 * significant bit of byte 0. A branch splits on one bit; every key below it shares all bits
 * before that one, keys with the bit 0 go left. Nodes are content-addressed (hash = SHA-256 of
 * the node's canonical encoding) and live in untrusted storage as `hash -> encoding`.
 *
 * There is no separate proof object: the HSM walks from a root it trusts, asks a `NodeSource`
 * for each hash on the key's path, and checks that every node hashes to the hash its parent
 * names. The agent ships those nodes (`proofNodes`); the leader layers its overlay of recently
 * created nodes over them (`layered`). Pure and synchronous: no I/O, clock or randomness.
 */
import { bytesEqual } from '../crypto/bytes.js';
import { sha256 } from '../crypto/sha256.js';
import { Reader, Writer } from '../protocol/encoding.js';
import { ProtocolError } from '../protocol/errors.js';

export const TREE_LEAF_LABEL = 'bkv/v1/tree-leaf';
export const TREE_BRANCH_LABEL = 'bkv/v1/tree-branch';
export const TREE_ROOT_LABEL = 'bkv/v1/tree-root';

export const KEY_BYTES = 32;
export const KEY_BITS = KEY_BYTES * 8;
export const HASH_BYTES = 32;
/** Largest value a leaf holds. Sealed records are fixed-size and far smaller. */
export const MAX_VALUE_BYTES = 4096;

/** The fleet and log a tree belongs to; both are bound into the root hash. */
export interface TreeContext {
  fleetId: Uint8Array;
  logId: Uint8Array;
}

/** Where the walk gets node encodings from. Untrusted: every answer is hash-checked. */
export interface NodeSource {
  get(hash: Uint8Array): Uint8Array | undefined;
}

/** Hash of the top node, or `EMPTY_TOP` for the empty tree. */
export type TreeTop = Uint8Array | null;
export const EMPTY_TOP: TreeTop = null;

/**
 * A tree root: `top` is what the walk starts from; `hash` is the context-bound root that log
 * entries carry. The HSM trusts `hash` (from a verified entry) and takes `top` from the agent;
 * every operation re-checks that `hash = rootHash(ctx, top)` before walking.
 */
export interface TreeRoot {
  readonly top: TreeTop;
  readonly hash: Uint8Array;
}

export type TreeNode =
  | { kind: 'Leaf'; key: Uint8Array; value: Uint8Array }
  | { kind: 'Branch'; bit: number; left: Uint8Array; right: Uint8Array };

export type MissingNode = { type: 'MissingNode'; hash: Uint8Array };
export type CorruptNode = { type: 'CorruptNode'; hash: Uint8Array };
/** The root's hash does not bind this fleet, log and top node. */
export type WrongRoot = { type: 'WrongRoot' };

export type LookupResult =
  | { type: 'Found'; value: Uint8Array }
  | { type: 'Absent' }
  | MissingNode
  | CorruptNode
  | WrongRoot;

export interface AddedNode {
  hash: Uint8Array;
  node: Uint8Array;
}

export type UpdateResult =
  | {
      type: 'Updated';
      root: TreeRoot;
      /** Nodes reachable from the new root and not from the old one, leaf first. */
      added: AddedNode[];
      /** Hashes reachable from the old root and not from the new one (the old path), top first. */
      removed: Uint8Array[];
    }
  | MissingNode
  | CorruptNode
  | WrongRoot;

/** The encodings on a key's path, top first: all the HSM needs to look the key up or upsert it. */
export type ProofResult = { type: 'Proof'; nodes: Uint8Array[] } | MissingNode | CorruptNode;

// ---------------------------------------------------------------------------------------------
// Encodings

export function encodeLeaf(key: Uint8Array, value: Uint8Array): Uint8Array {
  return new Writer().label(TREE_LEAF_LABEL).fixed(key, KEY_BYTES).bytes(value).finish();
}

export function encodeBranch(bit: number, left: Uint8Array, right: Uint8Array): Uint8Array {
  if (!Number.isInteger(bit) || bit < 0 || bit >= KEY_BITS) throw new RangeError('branch bit out of range');
  return new Writer()
    .label(TREE_BRANCH_LABEL)
    .u16(bit)
    .fixed(left, HASH_BYTES)
    .fixed(right, HASH_BYTES)
    .finish();
}

export function nodeHash(encoding: Uint8Array): Uint8Array {
  return sha256(encoding);
}

const LEAF_PREFIX = new Writer().label(TREE_LEAF_LABEL).finish();
const BRANCH_PREFIX = new Writer().label(TREE_BRANCH_LABEL).finish();

function hasPrefix(b: Uint8Array, prefix: Uint8Array): boolean {
  if (b.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (b[i] !== prefix[i]) return false;
  return true;
}

/** Strict decoding: exact label, exact length, bit in range, value within bounds (I8). */
export function decodeNode(encoding: Uint8Array): TreeNode | undefined {
  try {
    if (hasPrefix(encoding, LEAF_PREFIX)) {
      const r = new Reader(encoding);
      r.bytes(); // the label, already matched byte for byte by its prefix
      const key = r.fixed(KEY_BYTES);
      const value = r.bytes(MAX_VALUE_BYTES);
      r.done();
      return { kind: 'Leaf', key, value };
    }
    if (hasPrefix(encoding, BRANCH_PREFIX)) {
      const r = new Reader(encoding);
      r.bytes(); // the label, already matched byte for byte by its prefix
      const bit = r.u16();
      const left = r.fixed(HASH_BYTES);
      const right = r.fixed(HASH_BYTES);
      r.done();
      if (bit >= KEY_BITS) return undefined;
      return { kind: 'Branch', bit, left, right };
    }
    return undefined;
  } catch (e) {
    if (e instanceof ProtocolError) return undefined;
    throw e;
  }
}

/** The context-bound root: a root from another fleet or log never verifies (I5). */
export function rootHash(ctx: TreeContext, top: TreeTop): Uint8Array {
  return sha256(
    new Writer()
      .label(TREE_ROOT_LABEL)
      .fixed(ctx.fleetId, 32)
      .fixed(ctx.logId, 32)
      .bool(top !== null)
      .fixed(top ?? new Uint8Array(HASH_BYTES), HASH_BYTES)
      .finish(),
  );
}

export function treeRoot(ctx: TreeContext, top: TreeTop): TreeRoot {
  if (top !== null && top.length !== HASH_BYTES) throw new RangeError('top hash must be 32 bytes');
  return { top, hash: rootHash(ctx, top) };
}

/** The root of the empty tree: the genesis entry's root. */
export function emptyRoot(ctx: TreeContext): Uint8Array {
  return rootHash(ctx, EMPTY_TOP);
}

// ---------------------------------------------------------------------------------------------
// Node sources

/**
 * An in-memory node store. Holds whatever it is given; readers check hashes. Keyed by the hash's
 * bytes as a one-char-per-byte string: a map key like hex, about 3x cheaper to build.
 */
export class MapNodeSource implements NodeSource {
  private readonly map = new Map<string, Uint8Array>();

  private static key(hash: Uint8Array): string {
    let s = '';
    for (let i = 0; i < hash.length; i++) s += String.fromCharCode(hash[i]!);
    return s;
  }

  get(hash: Uint8Array): Uint8Array | undefined {
    return this.map.get(MapNodeSource.key(hash));
  }

  has(hash: Uint8Array): boolean {
    return this.map.has(MapNodeSource.key(hash));
  }

  put(hash: Uint8Array, node: Uint8Array): void {
    this.map.set(MapNodeSource.key(hash), node);
  }

  /** Stores a node under its own hash and returns the hash. */
  add(node: Uint8Array): Uint8Array {
    const hash = nodeHash(node);
    this.put(hash, node);
    return hash;
  }

  /** Applies an `Updated` result: drops the nodes no longer reachable, adds the new ones. */
  apply(added: readonly AddedNode[], removed: readonly Uint8Array[]): void {
    for (const h of removed) this.delete(h);
    for (const a of added) this.put(a.hash, a.node);
  }

  delete(hash: Uint8Array): boolean {
    return this.map.delete(MapNodeSource.key(hash));
  }

  get size(): number {
    return this.map.size;
  }

  *hashes(): IterableIterator<Uint8Array> {
    for (const k of this.map.keys()) {
      const h = new Uint8Array(k.length);
      for (let i = 0; i < k.length; i++) h[i] = k.charCodeAt(i);
      yield h;
    }
  }
}

/** Turns node encodings shipped by the agent into a source, each stored under its own hash. */
export function proofSource(encodings: Iterable<Uint8Array>): MapNodeSource {
  const source = new MapNodeSource();
  for (const e of encodings) source.add(e);
  return source;
}

/** Looks a hash up in each source in turn: the leader's overlay first, then shipped nodes. */
export function layered(...sources: NodeSource[]): NodeSource {
  return {
    get(hash: Uint8Array): Uint8Array | undefined {
      for (const s of sources) {
        const node = s.get(hash);
        if (node !== undefined) return node;
      }
      return undefined;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Walking

/** Bit i of a key, bit 0 being the most significant bit of byte 0. */
export function keyBit(key: Uint8Array, i: number): 0 | 1 {
  return ((key[i >> 3]! >> (7 - (i & 7))) & 1) as 0 | 1;
}

/** The first bit on which two distinct keys differ, or -1 if they are equal. */
function firstDifferingBit(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < KEY_BYTES; i++) {
    const x = a[i]! ^ b[i]!;
    if (x !== 0) return i * 8 + Math.clz32(x) - 24;
  }
  return -1;
}

interface Step {
  hash: Uint8Array;
  bit: number;
  left: Uint8Array;
  right: Uint8Array;
  dir: 0 | 1;
}

type Walk =
  | { type: 'Leaf'; path: Step[]; leafHash: Uint8Array; key: Uint8Array; value: Uint8Array }
  | MissingNode
  | CorruptNode;

/**
 * Follows `key` from `top` to a leaf, checking every node against the hash that names it. The
 * leaf reached is the only one that can hold `key`: all keys under a branch on bit d share bits
 * 0..d-1, so a leaf with another key proves absence. A missing node is an error, never "not
 * found" (a truncated path must not pass for non-membership: I1, I5).
 */
function walk(top: Uint8Array, key: Uint8Array, nodes: NodeSource, collect?: Uint8Array[]): Walk {
  const path: Step[] = [];
  let hash = top;
  let prevBit = -1;
  // Terminates: branch bits strictly increase and are < 256, so at most 257 nodes are read.
  for (;;) {
    const got = nodes.get(hash);
    if (got === undefined) return { type: 'MissingNode', hash };
    // Copy before checking, so the bytes decoded are the bytes hashed even if the source's
    // buffer is shared and changes underneath (I5).
    const enc = got.slice();
    if (!bytesEqual(nodeHash(enc), hash)) return { type: 'CorruptNode', hash };
    const node = decodeNode(enc);
    if (node === undefined) return { type: 'CorruptNode', hash };
    collect?.push(enc);
    if (node.kind === 'Branch') {
      // Bits strictly increase along a path; anything else is a malformed tree (I8), and this
      // bound is what keeps the walk finite.
      if (node.bit <= prevBit) return { type: 'CorruptNode', hash };
      const dir = keyBit(key, node.bit);
      path.push({ hash, bit: node.bit, left: node.left, right: node.right, dir });
      hash = dir === 0 ? node.left : node.right;
      prevBit = node.bit;
      continue;
    }
    // The leaf must sit where its own key leads; else its absence proof would be unsound (I5).
    for (const s of path) if (keyBit(node.key, s.bit) !== s.dir) return { type: 'CorruptNode', hash };
    return { type: 'Leaf', path, leafHash: hash, key: node.key, value: node.value };
  }
}

function checkKey(key: Uint8Array): void {
  if (key.length !== KEY_BYTES) throw new ProtocolError('Malformed', 'record id must be 32 bytes');
}

function bound(ctx: TreeContext, root: TreeRoot): boolean {
  if (root.top !== null && root.top.length !== HASH_BYTES) return false;
  return bytesEqual(rootHash(ctx, root.top), root.hash);
}

// ---------------------------------------------------------------------------------------------
// Operations

/** Looks `key` up under `root`. Throws `ProtocolError('Malformed')` for a key that is not 32 bytes. */
export function lookup(ctx: TreeContext, root: TreeRoot, key: Uint8Array, nodes: NodeSource): LookupResult {
  checkKey(key);
  if (!bound(ctx, root)) return { type: 'WrongRoot' };
  if (root.top === null) return { type: 'Absent' };
  const w = walk(root.top, key, nodes);
  if (w.type !== 'Leaf') return w;
  return bytesEqual(w.key, key) ? { type: 'Found', value: w.value } : { type: 'Absent' };
}

/**
 * Inserts `key` or replaces its value. Reads only the nodes on `key`'s path, so the nodes of
 * `proofNodes(root, key)` suffice. Throws `ProtocolError` for a key that is not 32 bytes
 * (`Malformed`) or a value over `MAX_VALUE_BYTES` (`TooLarge`).
 */
export function upsert(
  ctx: TreeContext,
  root: TreeRoot,
  key: Uint8Array,
  value: Uint8Array,
  nodes: NodeSource,
): UpdateResult {
  checkKey(key);
  if (value.length > MAX_VALUE_BYTES) throw new ProtocolError('TooLarge', 'tree value too large');
  if (!bound(ctx, root)) return { type: 'WrongRoot' };

  const leaf = encodeLeaf(key, value);
  const leafHash = nodeHash(leaf);
  const added: AddedNode[] = [{ hash: leafHash, node: leaf }];

  if (root.top === null) return { type: 'Updated', root: treeRoot(ctx, leafHash), added, removed: [] };

  const w = walk(root.top, key, nodes);
  if (w.type !== 'Leaf') return w;

  // The new subtree `sub` takes the place of the node at path index `depth`; the branches above
  // it are rebuilt, the ones below are kept.
  let depth: number;
  let sub: Uint8Array;
  const crit = firstDifferingBit(key, w.key);
  if (crit < 0) {
    // Replace: the old leaf and every branch above it change.
    if (bytesEqual(w.leafHash, leafHash)) return { type: 'Updated', root, added: [], removed: [] };
    depth = w.path.length;
    sub = leafHash;
  } else {
    // Insert: a new branch on the critical bit goes above the first node that splits on a later
    // bit. Keys agree on every bit the path tested, so no path bit equals `crit`.
    depth = w.path.findIndex((s) => s.bit > crit);
    if (depth < 0) depth = w.path.length;
    const kept = depth < w.path.length ? w.path[depth]!.hash : w.leafHash;
    const branch = keyBit(key, crit) === 0 ? encodeBranch(crit, leafHash, kept) : encodeBranch(crit, kept, leafHash);
    sub = nodeHash(branch);
    added.push({ hash: sub, node: branch });
  }

  const removed: Uint8Array[] = [];
  for (let i = 0; i < depth; i++) removed.push(w.path[i]!.hash);
  if (crit < 0) removed.push(w.leafHash);

  for (let i = depth - 1; i >= 0; i--) {
    const s = w.path[i]!;
    const branch = s.dir === 0 ? encodeBranch(s.bit, sub, s.right) : encodeBranch(s.bit, s.left, sub);
    sub = nodeHash(branch);
    added.push({ hash: sub, node: branch });
  }
  return { type: 'Updated', root: treeRoot(ctx, sub), added, removed };
}

/**
 * The node encodings on `key`'s path under `root.top`, top first (empty for the empty tree): what
 * the agent ships with a request. Checks hashes like the HSM does, so that corrupt storage is
 * noticed before the HSM has to refuse it.
 */
export function proofNodes(root: TreeRoot, key: Uint8Array, nodes: NodeSource): ProofResult {
  checkKey(key);
  const out: Uint8Array[] = [];
  if (root.top === null) return { type: 'Proof', nodes: out };
  const w = walk(root.top, key, nodes, out);
  return w.type === 'Leaf' ? { type: 'Proof', nodes: out } : w;
}
