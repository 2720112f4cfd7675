import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { compareBytes, concatBytes, toHex, utf8 } from '../src/crypto/bytes.js';
import { sha256 } from '../src/crypto/sha256.js';
import { ProtocolError } from '../src/protocol/errors.js';
import {
  EMPTY_TOP,
  MAX_VALUE_BYTES,
  MapNodeSource,
  decodeNode,
  emptyRoot,
  encodeBranch,
  encodeLeaf,
  keyBit,
  layered,
  lookup,
  nodeHash,
  proofNodes,
  proofSource,
  rootHash,
  treeRoot,
  upsert,
  type LookupResult,
  type NodeSource,
  type TreeContext,
  type TreeRoot,
  type UpdateResult,
} from '../src/hsm/tree.js';

const ctx: TreeContext = { fleetId: new Uint8Array(32).fill(0xf1), logId: new Uint8Array(32).fill(0x10) };

const key32 = fc.uint8Array({ minLength: 32, maxLength: 32 });
const value = fc.uint8Array({ maxLength: 48 });

function flipBit(b: Uint8Array, bit: number): Uint8Array {
  const out = b.slice();
  out[bit >> 3]! ^= 0x80 >> (bit & 7);
  return out;
}

function updated(r: UpdateResult): Extract<UpdateResult, { type: 'Updated' }> {
  if (r.type !== 'Updated') throw new Error(`expected Updated, got ${r.type}`);
  return r;
}

function proofOf(root: TreeRoot, key: Uint8Array, nodes: NodeSource): Uint8Array[] {
  const p = proofNodes(root, key, nodes);
  if (p.type !== 'Proof') throw new Error(`expected Proof, got ${p.type}`);
  return p.nodes;
}

/** Builds a tree; the store keeps exactly the reachable nodes (applies `removed`). */
function build(c: TreeContext, entries: Iterable<readonly [Uint8Array, Uint8Array]>) {
  const store = new MapNodeSource();
  let root = treeRoot(c, EMPTY_TOP);
  for (const [k, v] of entries) {
    const r = updated(upsert(c, root, k, v, store));
    store.apply(r.added, r.removed);
    root = r.root;
  }
  return { root, store };
}

/** Every node hash reachable from `top`, by a full traversal. */
function reachable(top: Uint8Array | null, nodes: NodeSource): Set<string> {
  const seen = new Set<string>();
  const stack = top === null ? [] : [top];
  while (stack.length > 0) {
    const h = stack.pop()!;
    seen.add(toHex(h));
    const n = decodeNode(nodes.get(h)!);
    if (n === undefined) throw new Error('undecodable node in store');
    if (n.kind === 'Branch') stack.push(n.left, n.right);
  }
  return seen;
}

function expectModel(r: LookupResult, want: Uint8Array | undefined): void {
  if (want === undefined) expect(r).toEqual({ type: 'Absent' });
  else expect(r).toEqual({ type: 'Found', value: want });
}

/** A pool of keys with near neighbours: first bit, byte edges and last bit flipped. */
const keyPool = fc
  .array(key32, { minLength: 1, maxLength: 10 })
  .chain((base) =>
    fc
      .array(fc.tuple(fc.nat(base.length - 1), fc.oneof(fc.constantFrom(0, 7, 8, 254, 255), fc.nat(255))), {
        maxLength: 12,
      })
      .map((flips) => [...base, ...flips.map(([i, bit]) => flipBit(base[i]!, bit))]),
  );

type Op = { op: 'upsert'; k: number; v: Uint8Array } | { op: 'lookup'; k: number };
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant('upsert' as const), k: fc.nat(), v: value }),
  fc.record({ op: fc.constant('lookup' as const), k: fc.nat() }),
);

describe('tree: encodings', () => {
  it('leaf, branch and root encodings are the documented byte layouts', () => {
    const u32 = (n: number) => Uint8Array.of(n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255);
    const lbl = (s: string) => concatBytes(u32(utf8(s).length), utf8(s));
    const key = new Uint8Array(32).fill(7);
    const val = Uint8Array.of(1, 2, 3);
    expect(encodeLeaf(key, val)).toEqual(concatBytes(lbl('bkv/v1/tree-leaf'), key, u32(3), val));
    const l = new Uint8Array(32).fill(1);
    const r = new Uint8Array(32).fill(2);
    expect(encodeBranch(258 - 3, l, r)).toEqual(concatBytes(lbl('bkv/v1/tree-branch'), Uint8Array.of(0, 255), l, r));
    const top = nodeHash(encodeLeaf(key, val));
    expect(rootHash(ctx, top)).toEqual(sha256(concatBytes(lbl('bkv/v1/tree-root'), ctx.fleetId, ctx.logId, Uint8Array.of(1), top)));
    expect(emptyRoot(ctx)).toEqual(
      sha256(concatBytes(lbl('bkv/v1/tree-root'), ctx.fleetId, ctx.logId, Uint8Array.of(0), new Uint8Array(32))),
    );
    expect(treeRoot(ctx, EMPTY_TOP).hash).toEqual(emptyRoot(ctx));
  });

  it('decoding is strict', () => {
    const key = new Uint8Array(32);
    const h = new Uint8Array(32);
    const leaf = encodeLeaf(key, Uint8Array.of(9));
    expect(decodeNode(leaf)).toEqual({ kind: 'Leaf', key, value: Uint8Array.of(9) });
    expect(decodeNode(concatBytes(leaf, Uint8Array.of(0)))).toBeUndefined(); // trailing byte
    expect(decodeNode(leaf.subarray(0, leaf.length - 1))).toBeUndefined(); // truncated
    expect(decodeNode(encodeLeaf(key, new Uint8Array(MAX_VALUE_BYTES)))?.kind).toBe('Leaf');
    expect(decodeNode(encodeLeaf(key, new Uint8Array(MAX_VALUE_BYTES + 1)))).toBeUndefined();
    const branch = encodeBranch(255, h, h);
    expect(decodeNode(branch)).toEqual({ kind: 'Branch', bit: 255, left: h, right: h });
    const bit256 = branch.slice();
    bit256[22] = 1; // the u16 bit field follows the 22-byte label: 0x00ff -> 0x01ff
    expect(decodeNode(bit256)).toBeUndefined();
    expect(decodeNode(branch.subarray(0, branch.length - 1))).toBeUndefined();
    expect(decodeNode(new Uint8Array(0))).toBeUndefined();
    expect(decodeNode(concatBytes(Uint8Array.of(0, 0, 0, 16), utf8('bkv/v1/tree-lea!')))).toBeUndefined();
    expect(() => encodeBranch(256, h, h)).toThrow(RangeError);
  });
});

describe('tree: model', () => {
  it('random upserts and lookups agree with a Map, and the store holds exactly the reachable nodes', () => {
    fc.assert(
      fc.property(keyPool, fc.array(opArb, { maxLength: 40 }), (pool, ops) => {
        const model = new Map<string, Uint8Array>();
        const store = new MapNodeSource();
        let root = treeRoot(ctx, EMPTY_TOP);
        for (const o of ops) {
          const k = pool[o.k % pool.length]!;
          if (o.op === 'lookup') {
            expectModel(lookup(ctx, root, k, store), model.get(toHex(k)));
            continue;
          }
          const r = updated(upsert(ctx, root, k, o.v, store));
          for (const h of r.removed) expect(store.has(h)).toBe(true);
          for (const a of r.added) expect(nodeHash(a.node)).toEqual(a.hash);
          store.apply(r.added, r.removed);
          root = r.root;
          model.set(toHex(k), o.v);
          // removed/added are exact: the store is the reachable set, 2n-1 nodes for n keys.
          expect(store.size).toBe(2 * model.size - 1);
          expect(new Set([...store.hashes()].map(toHex))).toEqual(reachable(root.top, store));
        }
        for (const k of pool) expectModel(lookup(ctx, root, k, store), model.get(toHex(k)));
      }),
    );
  });

  it('the root depends only on the final contents, not on order or overwritten values', () => {
    const entries = fc.uniqueArray(fc.tuple(key32, value), { selector: (e) => toHex(e[0]), maxLength: 30 });
    fc.assert(
      fc.property(
        entries.chain((es) =>
          fc.tuple(
            fc.constant(es),
            fc.shuffledSubarray(es, { minLength: es.length, maxLength: es.length }),
            fc.array(value, { minLength: es.length, maxLength: es.length }),
          ),
        ),
        ([es, shuffled, junk]) => {
          const a = build(ctx, es);
          const b = build(ctx, [...shuffled.map(([k], i) => [k, junk[i]!] as const), ...shuffled]);
          expect(b.root).toEqual(a.root);
        },
      ),
    );
  });

  it('upserts build the canonical crit-bit tree (an independent recursive build agrees)', () => {
    // Reference: sort the keys, split on the first bit where the range's ends differ.
    const reference = (es: Array<[Uint8Array, Uint8Array]>): Uint8Array | null => {
      const sorted = [...es].sort((a, b) => compareBytes(a[0], b[0]));
      const bitOf = (k: Uint8Array, i: number) => (k[i >> 3]! >> (7 - (i & 7))) & 1;
      const go = (lo: number, hi: number): Uint8Array => {
        if (hi - lo === 1) return sha256(encodeLeaf(sorted[lo]![0], sorted[lo]![1]));
        let bit = 0;
        while (bitOf(sorted[lo]![0], bit) === bitOf(sorted[hi - 1]![0], bit)) bit++;
        let mid = lo;
        while (bitOf(sorted[mid]![0], bit) === 0) mid++;
        return sha256(encodeBranch(bit, go(lo, mid), go(mid, hi)));
      };
      return sorted.length === 0 ? null : go(0, sorted.length);
    };
    fc.assert(
      fc.property(keyPool, (pool) => {
        const es = [...new Map(pool.map((k, i) => [toHex(k), [k, Uint8Array.of(i)] as [Uint8Array, Uint8Array]])).values()];
        expect(build(ctx, es).root.top).toEqual(reference(es));
      }),
    );
  });

  it('re-upserting the same value changes nothing', () => {
    const { root, store } = build(ctx, [
      [new Uint8Array(32).fill(1), Uint8Array.of(1)],
      [new Uint8Array(32).fill(2), Uint8Array.of(2)],
    ]);
    const r = updated(upsert(ctx, root, new Uint8Array(32).fill(2), Uint8Array.of(2), store));
    expect(r).toEqual({ type: 'Updated', root, added: [], removed: [] });
  });

  it('keys that differ only in the last bit', () => {
    const k0 = new Uint8Array(32).fill(0xa5);
    const k1 = flipBit(k0, 255);
    const { root, store } = build(ctx, [
      [k0, Uint8Array.of(0)],
      [k1, Uint8Array.of(1)],
    ]);
    expect(lookup(ctx, root, k0, store)).toEqual({ type: 'Found', value: Uint8Array.of(0) });
    expect(lookup(ctx, root, k1, store)).toEqual({ type: 'Found', value: Uint8Array.of(1) });
    expect(lookup(ctx, root, flipBit(k0, 254), store)).toEqual({ type: 'Absent' });
    expect(lookup(ctx, root, flipBit(k1, 0), store)).toEqual({ type: 'Absent' });
    const top = decodeNode(store.get(root.top!)!);
    expect(top).toMatchObject({ kind: 'Branch', bit: 255 });
    expect(keyBit(k0, 255)).toBe(1); // 0xa5 ends in 1: k0 goes right
    expect(proofOf(root, k1, store)).toHaveLength(2);
  });

  it('the empty tree: every key is absent, the proof is empty', () => {
    const root = treeRoot(ctx, EMPTY_TOP);
    const store = new MapNodeSource();
    expect(lookup(ctx, root, new Uint8Array(32), store)).toEqual({ type: 'Absent' });
    expect(proofOf(root, new Uint8Array(32), store)).toEqual([]);
  });
});

/** A tree and a probe key: a present key, a near neighbour of one, or a random key. */
const treeAndProbe = fc
  .uniqueArray(fc.tuple(key32, value), { selector: (e) => toHex(e[0]), minLength: 1, maxLength: 40 })
  .chain((es) =>
    fc.tuple(
      fc.constant(es),
      fc.oneof(
        fc.constantFrom(...es.map((e) => e[0])),
        fc.tuple(fc.constantFrom(...es.map((e) => e[0])), fc.nat(255)).map(([k, b]) => flipBit(k, b)),
        key32,
      ),
      value,
    ),
  );

describe('tree: proofs', () => {
  it('the proof nodes shipped alone suffice for lookup and upsert', () => {
    fc.assert(
      fc.property(treeAndProbe, ([es, probe, v]) => {
        const { root, store } = build(ctx, es);
        const shipped = proofSource(proofOf(root, probe, store));
        expect(lookup(ctx, root, probe, shipped)).toEqual(lookup(ctx, root, probe, store));
        expect(upsert(ctx, root, probe, v, shipped)).toEqual(upsert(ctx, root, probe, v, store));
      }),
    );
  });

  it('dropping any one node of a proof gives MissingNode for that node', () => {
    fc.assert(
      fc.property(treeAndProbe, ([es, probe, v]) => {
        const { root, store } = build(ctx, es);
        const proof = proofOf(root, probe, store);
        for (let i = 0; i < proof.length; i++) {
          const partial = proofSource(proof.filter((_, j) => j !== i));
          const missing = { type: 'MissingNode', hash: nodeHash(proof[i]!) };
          expect(lookup(ctx, root, probe, partial)).toEqual(missing);
          expect(upsert(ctx, root, probe, v, partial)).toEqual(missing);
        }
      }),
    );
  });

  it('a flipped bit in any node is refused, never read as a value or as absence', () => {
    fc.assert(
      fc.property(treeAndProbe, fc.nat(), fc.nat(), ([es, probe, v], i0, b0) => {
        const { root, store } = build(ctx, es);
        const proof = proofOf(root, probe, store);
        const i = i0 % proof.length;
        const original = proof[i]!;
        const corrupted = flipBit(original, b0 % (original.length * 8));
        const hash = nodeHash(original);
        // Storage serves the corrupted bytes under the hash the parent names.
        const served = new MapNodeSource();
        proof.forEach((n) => served.add(n));
        served.put(hash, corrupted);
        expect(lookup(ctx, root, probe, served)).toEqual({ type: 'CorruptNode', hash });
        expect(upsert(ctx, root, probe, v, served)).toEqual({ type: 'CorruptNode', hash });
        // The agent ships the corrupted bytes: they hash elsewhere, so the node is missing.
        const shipped = proofSource(proof.map((n, j) => (j === i ? corrupted : n)));
        expect(lookup(ctx, root, probe, shipped)).toEqual({ type: 'MissingNode', hash });
      }),
    );
  });

  it('every single-bit flip of every node on a path is refused (exhaustive, one tree)', () => {
    const entries = Array.from({ length: 64 }, (_, i) => [sha256(Uint8Array.of(i)), Uint8Array.of(i, i)] as const);
    const { root, store } = build(ctx, entries);
    for (const probe of [entries[5]![0], flipBit(entries[9]![0], 200)]) {
      const proof = proofOf(root, probe, store);
      for (const node of proof) {
        const hash = nodeHash(node);
        for (let b = 0; b < node.length * 8; b++) {
          const served = layered({ get: (h) => (toHex(h) === toHex(hash) ? flipBit(node, b) : undefined) }, store);
          expect(lookup(ctx, root, probe, served)).toEqual({ type: 'CorruptNode', hash });
        }
      }
    }
  });

  it('a root from another fleet or log does not verify', () => {
    fc.assert(
      fc.property(treeAndProbe, key32, fc.boolean(), ([es, probe, v], other, swapFleet) => {
        fc.pre(toHex(other) !== toHex(swapFleet ? ctx.fleetId : ctx.logId));
        const ctx2: TreeContext = swapFleet ? { ...ctx, fleetId: other } : { ...ctx, logId: other };
        const { root, store } = build(ctx, es);
        expect(treeRoot(ctx2, root.top).hash).not.toEqual(root.hash);
        expect(emptyRoot(ctx2)).not.toEqual(emptyRoot(ctx));
        expect(lookup(ctx2, root, probe, store)).toEqual({ type: 'WrongRoot' });
        expect(upsert(ctx2, root, probe, v, store)).toEqual({ type: 'WrongRoot' });
        // A trusted root hash with another tree's top: the binding fails too.
        const { root: otherRoot } = build(ctx, [[probe, Uint8Array.of(1, 2, 3, 4)]]);
        fc.pre(toHex(otherRoot.top!) !== toHex(root.top!));
        expect(lookup(ctx, { top: otherRoot.top, hash: root.hash }, probe, store)).toEqual({ type: 'WrongRoot' });
      }),
    );
  });

  it('a proof against an older root, under the overlay of newer nodes, serves the tip (Leader rule)', () => {
    fc.assert(
      fc.property(
        treeAndProbe,
        fc.array(fc.tuple(fc.oneof(key32, fc.constant(null)), value), { minLength: 1, maxLength: 8 }),
        ([es, probe, v], later) => {
          const all = new MapNodeSource(); // append-only: every node ever written
          let oldRoot = treeRoot(ctx, EMPTY_TOP);
          for (const [k, ev] of es) {
            const r = updated(upsert(ctx, oldRoot, k, ev, all));
            all.apply(r.added, []);
            oldRoot = r.root;
          }
          const overlay = new MapNodeSource();
          let tip = oldRoot;
          for (const [k, lv] of later) {
            const r = updated(upsert(ctx, tip, k ?? probe, lv, all));
            for (const a of r.added) {
              overlay.put(a.hash, a.node);
              all.put(a.hash, a.node);
            }
            tip = r.root;
          }
          const nodes = layered(overlay, proofSource(proofOf(oldRoot, probe, all)));
          expect(lookup(ctx, tip, probe, nodes)).toEqual(lookup(ctx, tip, probe, all));
          expect(upsert(ctx, tip, probe, v, nodes)).toEqual(upsert(ctx, tip, probe, v, all));
        },
      ),
    );
  });

  it('proof size is about log2 N (N = 10,000 random keys)', () => {
    const n = 10_000;
    const keys = Array.from({ length: n }, (_, i) => sha256(Uint8Array.of(i >> 8, i & 255)));
    const { root, store } = build(
      ctx,
      keys.map((k) => [k, k.subarray(0, 8)] as const),
    );
    expect(store.size).toBe(2 * n - 1);
    const bound = 2 * Math.log2(n) + 4;
    let total = 0;
    let max = 0;
    const probes = [...keys.slice(0, 2000), ...keys.slice(0, 2000).map((k) => flipBit(k, 128))];
    for (const k of probes) {
      const len = proofOf(root, k, store).length;
      total += len;
      max = Math.max(max, len);
    }
    expect(max).toBeLessThanOrEqual(bound);
    expect(total / probes.length).toBeLessThanOrEqual(Math.log2(n) + 3);
  });
});

describe('tree: malformed trees and bad input', () => {
  const c = (bit: number) => {
    const k = new Uint8Array(32);
    if (bit >= 0) k[bit >> 3]! |= 0x80 >> (bit & 7);
    return k;
  };

  it('a branch whose bit does not increase is corrupt', () => {
    const store = new MapNodeSource();
    const l0 = store.add(encodeLeaf(c(-1), Uint8Array.of(0)));
    const l1 = store.add(encodeLeaf(c(9), Uint8Array.of(1)));
    const inner = store.add(encodeBranch(9, l0, l1));
    for (const parentBit of [9, 200]) {
      const top = store.add(encodeBranch(parentBit, inner, store.add(encodeLeaf(c(parentBit), Uint8Array.of(2)))));
      expect(lookup(ctx, treeRoot(ctx, top), c(-1), store)).toEqual({ type: 'CorruptNode', hash: inner });
      expect(proofNodes(treeRoot(ctx, top), c(-1), store)).toEqual({ type: 'CorruptNode', hash: inner });
    }
  });

  it('a leaf off its key path is corrupt, not a proof of absence', () => {
    const store = new MapNodeSource();
    // Key c(3) has bit 3 set but sits on the left (bit 3 = 0) side.
    const misplaced = store.add(encodeLeaf(c(3), Uint8Array.of(1)));
    const right = store.add(encodeLeaf(c(3).map((b, i) => (i === 1 ? 0x20 : b)), Uint8Array.of(2)));
    const top = store.add(encodeBranch(3, misplaced, right));
    const root = treeRoot(ctx, top);
    expect(lookup(ctx, root, c(-1), store)).toEqual({ type: 'CorruptNode', hash: misplaced });
    expect(upsert(ctx, root, c(-1), Uint8Array.of(0), store)).toEqual({ type: 'CorruptNode', hash: misplaced });
  });

  it('keys of the wrong length and oversized values are refused with a clear error', () => {
    const root = treeRoot(ctx, EMPTY_TOP);
    const store = new MapNodeSource();
    const code = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return e instanceof ProtocolError ? e.code : 'other';
      }
      return 'none';
    };
    expect(code(() => lookup(ctx, root, new Uint8Array(31), store))).toBe('Malformed');
    expect(code(() => upsert(ctx, root, new Uint8Array(33), Uint8Array.of(), store))).toBe('Malformed');
    expect(code(() => upsert(ctx, root, new Uint8Array(32), new Uint8Array(MAX_VALUE_BYTES + 1), store))).toBe('TooLarge');
    expect(code(() => upsert(ctx, root, new Uint8Array(32), new Uint8Array(MAX_VALUE_BYTES), store))).toBe('none');
    expect(lookup(ctx, { top: new Uint8Array(31), hash: root.hash }, new Uint8Array(32), store)).toEqual({ type: 'WrongRoot' });
  });
});
