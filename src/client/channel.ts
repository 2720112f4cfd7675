/**
 * Seals a request to the fleet key. In browsers: WebCrypto (crypto/hpke.ts). On Node: the same
 * format on node:crypto (crypto/hpke-node.ts), loaded on demand so browser bundles need not
 * include it. Both are tested against the RFC 9180 vectors and each other.
 */
import { sealRequest } from '../crypto/hpke.js';
import { randomBytes } from './webcrypto.js';

export interface SealedForFleet {
  enc: Uint8Array;
  ciphertext: Uint8Array;
  openResponse(response: Uint8Array): Promise<Uint8Array>;
}

type NodeSealer = typeof import('../crypto/hpke-node.js').sealRequestSync;

let nodeSealer: Promise<NodeSealer | undefined> | undefined;

function loadNodeSealer(): Promise<NodeSealer | undefined> {
  const onNode = typeof (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node === 'string';
  nodeSealer ??= onNode ? import('../crypto/hpke-node.js').then((m) => m.sealRequestSync).catch(() => undefined) : Promise.resolve(undefined);
  return nodeSealer;
}

export async function sealForFleet(recipientPublicKey: Uint8Array, info: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Promise<SealedForFleet> {
  const fast = await loadNodeSealer();
  if (!fast) return sealRequest(recipientPublicKey, info, aad, plaintext);
  const s = fast(recipientPublicKey, info, aad, plaintext, randomBytes(32));
  return { enc: s.enc, ciphertext: s.ciphertext, openResponse: async (r) => s.openResponse(r) };
}
