/**
 * Merkle radix tree throughput: lookups and upserts at 10^5 records, against the raw SHA-256 rate
 * of a node-sized input, which bounds both (every node on a path is hashed once per walk).
 * Run alone: `node dist/bench/tree.js [--quick]`.
 */
import { pathToFileURL } from 'node:url';
import { compareBytes } from '../src/crypto/bytes.js';
import { sha256 } from '../src/crypto/sha256.js';
import {
  MapNodeSource,
  encodeBranch,
  encodeLeaf,
  keyBit,
  lookup,
  proofNodes,
  proofSource,
  treeRoot,
  upsert,
  type TreeContext,
  type TreeRoot,
} from '../src/hsm/tree.js';
import type { BenchResult } from './result.js';

const VALUE_BYTES = 256; // about a sealed record

function keyOf(i: number): Uint8Array {
  return sha256(Uint8Array.of(i >>> 24, (i >>> 16) & 255, (i >>> 8) & 255, i & 255));
}

function valueOf(key: Uint8Array, version: number): Uint8Array {
  const v = new Uint8Array(VALUE_BYTES);
  v.set(key);
  v[VALUE_BYTES - 1] = version & 255;
  return v;
}

/**
 * Builds the canonical tree of `keys` directly (sorted, split on the first differing bit), much
 * faster than n upserts; not part of the HSM, which only ever upserts.
 */
function bulkBuild(keys: Uint8Array[], store: MapNodeSource): Uint8Array {
  const sorted = [...keys].sort(compareBytes);
  const build = (lo: number, hi: number): Uint8Array => {
    if (hi - lo === 1) return store.add(encodeLeaf(sorted[lo]!, valueOf(sorted[lo]!, 0)));
    let bit = 0;
    while (keyBit(sorted[lo]!, bit) === keyBit(sorted[hi - 1]!, bit)) bit++;
    let mid = lo;
    while (keyBit(sorted[mid]!, bit) === 0) mid++;
    return store.add(encodeBranch(bit, build(lo, mid), build(mid, hi)));
  };
  return build(0, sorted.length);
}

/** Runs `op` for `count` iterations and returns operations per second. */
function rate(count: number, op: (i: number) => void): number {
  const warm = Math.min(count, 200);
  for (let i = 0; i < warm; i++) op(i);
  const t0 = performance.now();
  for (let i = 0; i < count; i++) op(i);
  return count / ((performance.now() - t0) / 1000);
}

export async function benchTree(opts: { quick: boolean }): Promise<BenchResult[]> {
  const n = opts.quick ? 10_000 : 100_000;
  const ops = opts.quick ? 2_000 : 20_000;
  const ctx: TreeContext = { fleetId: new Uint8Array(32).fill(1), logId: new Uint8Array(32).fill(2) };
  const conditions = `${n} records, ${VALUE_BYTES}-byte values, ${ops} ops, in-memory MapNodeSource, 1 thread, node ${process.version}`;

  const keys = Array.from({ length: n }, (_, i) => keyOf(i));
  const store = new MapNodeSource();
  // Every probe below must come back Found, which checks the build.
  let root: TreeRoot = treeRoot(ctx, bulkBuild(keys, store));
  // Probe keys spread over the tree; the same ones for every measurement.
  const probe = (i: number): Uint8Array => keys[(i * 7919) % n]!;

  let pathNodes = 0;
  for (let i = 0; i < ops; i++) {
    const p = proofNodes(root, probe(i), store);
    if (p.type !== 'Proof') throw new Error(p.type);
    pathNodes += p.nodes.length;
  }
  const meanPath = pathNodes / ops;

  const node = encodeBranch(17, new Uint8Array(32), new Uint8Array(32));
  const shaRate = rate(ops * 20, () => sha256(node));

  const lookupRate = rate(ops, (i) => {
    if (lookup(ctx, root, probe(i), store).type !== 'Found') throw new Error('lookup failed');
  });

  // The HSM's path: the agent ships the proof nodes; the HSM hashes them into a source and walks.
  const proofs = Array.from({ length: ops }, (_, i) => {
    const p = proofNodes(root, probe(i), store);
    if (p.type !== 'Proof') throw new Error(p.type);
    return p.nodes;
  });
  const shippedRate = rate(ops, (i) => {
    if (lookup(ctx, root, probe(i), proofSource(proofs[i]!)).type !== 'Found') throw new Error('lookup failed');
  });

  let version = 1;
  const upsertRate = rate(ops, (i) => {
    const key = probe(i);
    const r = upsert(ctx, root, key, valueOf(key, version++), store);
    if (r.type !== 'Updated') throw new Error(`upsert failed: ${r.type}`);
    store.apply(r.added, r.removed);
    root = r.root;
  });

  // Hashing bounds: a lookup hashes every node on the path plus the root binding; an upsert
  // also hashes each rebuilt node.
  const lookupBound = shaRate / (meanPath + 1);
  const upsertBound = shaRate / (2 * meanPath + 2);
  const round = (x: number): number => Math.round(x);
  const ratio = (v: number, b: number): number => Math.round((v / b) * 100) / 100;
  return [
    { name: 'tree.sha256-node', unit: 'hashes/s', value: round(shaRate), conditions: `${node.length}-byte input, ${conditions}` },
    { name: 'tree.path-nodes', unit: 'nodes', value: Math.round(meanPath * 100) / 100, conditions },
    {
      name: 'tree.lookup',
      unit: 'ops/s',
      value: round(lookupRate),
      baseline: round(lookupBound),
      ratio: ratio(lookupRate, lookupBound),
      conditions,
    },
    {
      name: 'tree.lookup-shipped-proof',
      unit: 'ops/s',
      value: round(shippedRate),
      baseline: round(lookupBound / 2),
      ratio: ratio(shippedRate, lookupBound / 2),
      conditions: `proof hashed into a source, then walked; ${conditions}`,
    },
    {
      name: 'tree.upsert',
      unit: 'ops/s',
      value: round(upsertRate),
      baseline: round(upsertBound),
      ratio: ratio(upsertRate, upsertBound),
      conditions: `replace value, store updated; ${conditions}`,
    },
  ];
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const results = await benchTree({ quick: process.argv.includes('--quick') });
  console.table(
    results.map((r) => ({ name: r.name, value: r.value, unit: r.unit, bound: r.baseline ?? '', ratio: r.ratio ?? '' })),
  );
  console.log(results[0]?.conditions ?? '');
}
