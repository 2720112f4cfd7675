/**
 * Ed25519 (RFC 8032) through WebCrypto, so that the same code runs in Node (20+) and in browsers.
 * WebCrypto imports private keys only as PKCS#8, so a 32-byte seed is wrapped in the fixed
 * RFC 8410 prefix; the public key is read back through JWK export.
 */
import { fromBase64Url } from '../../crypto/bytes.js';

const ED25519 = { name: 'Ed25519' } as const;

/** RFC 8410 PrivateKeyInfo for id-Ed25519 (1.3.101.112), up to the 32-byte seed. */
const PKCS8_PREFIX = Uint8Array.of(
  0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
);

export const ED25519_PUBLIC_KEY_SIZE = 32;
export const ED25519_SEED_SIZE = 32;
export const ED25519_SIGNATURE_SIZE = 64;

function subtle(): SubtleCrypto {
  const s = globalThis.crypto?.subtle;
  if (!s) throw new Error('WebCrypto (crypto.subtle) is not available');
  return s;
}

/** A copy backed by a plain ArrayBuffer, which is what the WebCrypto typings accept. */
function buffer(b: Uint8Array): Uint8Array<ArrayBuffer> {
  return Uint8Array.from(b);
}

export function importPublicKey(publicKey: Uint8Array): Promise<CryptoKey> {
  if (publicKey.length !== ED25519_PUBLIC_KEY_SIZE) throw new RangeError('Ed25519 public key must be 32 bytes');
  return subtle().importKey('raw', buffer(publicKey), ED25519, false, ['verify']);
}

export async function importSeed(seed: Uint8Array): Promise<{ privateKey: CryptoKey; publicKey: Uint8Array }> {
  if (seed.length !== ED25519_SEED_SIZE) throw new RangeError('Ed25519 seed must be 32 bytes');
  const pkcs8 = new Uint8Array(PKCS8_PREFIX.length + seed.length);
  pkcs8.set(PKCS8_PREFIX);
  pkcs8.set(seed, PKCS8_PREFIX.length);
  try {
    // Extractable only to read the public key back; the key that is kept is not extractable.
    const extractable = await subtle().importKey('pkcs8', pkcs8, ED25519, true, ['sign']);
    const jwk = await subtle().exportKey('jwk', extractable);
    if (typeof jwk.x !== 'string') throw new Error('Ed25519 JWK export without a public key');
    const privateKey = await subtle().importKey('pkcs8', pkcs8, ED25519, false, ['sign']);
    return { privateKey, publicKey: fromBase64Url(jwk.x) };
  } finally {
    pkcs8.fill(0);
  }
}

export async function sign(privateKey: CryptoKey, message: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await subtle().sign(ED25519, privateKey, buffer(message)));
}

/** False for a signature of the wrong length or a key that WebCrypto refuses, as for a bad one. */
export async function verify(publicKey: CryptoKey, signature: Uint8Array, message: Uint8Array): Promise<boolean> {
  if (signature.length !== ED25519_SIGNATURE_SIZE) return false;
  try {
    return await subtle().verify(ED25519, publicKey, buffer(signature), buffer(message));
  } catch {
    return false;
  }
}
