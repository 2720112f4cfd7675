/**
 * Thin synchronous wrappers over node:crypto for the server side (HSM core, agent, storage).
 * Nothing here draws randomness: callers pass random values from their platform's RNG.
 */
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, createPrivateKey, createPublicKey, sign as nodeSign, verify as nodeVerify, type KeyObject } from 'node:crypto';
import { concatBytes, constantTimeEqual } from './bytes.js';

export const AES_GCM_NONCE = 12;
export const AES_GCM_TAG = 16;

export function hkdf(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array, length: number): Uint8Array {
  return new Uint8Array(hkdfSync('sha256', ikm, salt, info, length));
}

export function hmacSha256(key: Uint8Array, ...data: Uint8Array[]): Uint8Array {
  const h = createHmac('sha256', key);
  for (const d of data) h.update(d);
  return new Uint8Array(h.digest());
}

export function verifyHmacSha256(key: Uint8Array, tag: Uint8Array, ...data: Uint8Array[]): boolean {
  return constantTimeEqual(hmacSha256(key, ...data), tag);
}

/** AES-256-GCM; returns ciphertext || tag. */
export function aesGcmSeal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Uint8Array {
  const c = createCipheriv('aes-256-gcm', key, nonce);
  c.setAAD(aad);
  const ct = c.update(plaintext);
  const fin = c.final();
  return concatBytes(ct, fin, c.getAuthTag());
}

/** AES-256-GCM open; returns null if authentication fails. */
export function aesGcmOpen(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Uint8Array | null {
  if (sealed.length < AES_GCM_TAG || nonce.length !== AES_GCM_NONCE) return null;
  try {
    const d = createDecipheriv('aes-256-gcm', key, nonce);
    d.setAAD(aad);
    d.setAuthTag(sealed.subarray(sealed.length - AES_GCM_TAG));
    const pt = d.update(sealed.subarray(0, sealed.length - AES_GCM_TAG));
    return concatBytes(pt, d.final());
  } catch {
    return null;
  }
}

const ED25519_PKCS8_PREFIX = Uint8Array.from([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20]);
const ED25519_SPKI_PREFIX = Uint8Array.from([0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00]);

function ed25519Private(seed: Uint8Array): KeyObject {
  return createPrivateKey({ key: Buffer.from(concatBytes(ED25519_PKCS8_PREFIX, seed)), format: 'der', type: 'pkcs8' });
}

export function ed25519PublicKey(seed: Uint8Array): Uint8Array {
  const spki = createPublicKey(ed25519Private(seed)).export({ format: 'der', type: 'spki' });
  return new Uint8Array(spki.subarray(spki.length - 32));
}

export function ed25519Sign(seed: Uint8Array, message: Uint8Array): Uint8Array {
  return new Uint8Array(nodeSign(null, message, ed25519Private(seed)));
}

export function ed25519Verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  try {
    const key = createPublicKey({ key: Buffer.from(concatBytes(ED25519_SPKI_PREFIX, publicKey)), format: 'der', type: 'spki' });
    return nodeVerify(null, message, key, signature);
  } catch {
    return false;
  }
}
