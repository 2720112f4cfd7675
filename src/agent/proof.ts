/** Reads a record's tree path from storage for the HSM (which re-checks every node's hash). */
import { decodeNode, keyBit } from '../hsm/tree.js';
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
