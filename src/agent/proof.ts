/** Reads a record's tree path from storage for the HSM (which re-checks every node's hash). */
import { decodeNode, keyBit } from '../hsm/tree.js';
import { leafEpoch } from '../hsm/record.js';
import type { Storage } from '../storage/types.js';

/** Node encodings on `key`'s path below `top`, top first; stops early if storage lacks a node. */
export async function collectPath(storage: Storage, top: Uint8Array | null, key: Uint8Array): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  let hash = top;
  while (hash && out.length <= 257) {
    const node = await storage.getNode(hash);
    if (!node) break;
    out.push(node);
    const n = decodeNode(node);
    if (!n || n.kind === 'Leaf') break;
    hash = keyBit(key, n.bit) === 0 ? n.left : n.right;
  }
  return out;
}

/**
 * Record ids of up to `limit` leaves sealed under an epoch older than `current` (the epoch is in
 * each leaf's clear header). A full walk: sweeps are rare and run in small steps.
 */
export async function collectStaleLeaves(storage: Storage, top: Uint8Array | null, current: number, limit: number): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  const stack: Uint8Array[] = top ? [top] : [];
  while (stack.length > 0 && out.length < limit) {
    const node = await storage.getNode(stack.pop()!);
    if (!node) continue;
    const n = decodeNode(node);
    if (!n) continue;
    if (n.kind === 'Branch') {
      stack.push(n.right, n.left);
    } else if (n.value.length >= 4 && leafEpoch(n.value) < current) {
      out.push(n.key);
    }
  }
  return out;
}
