/** WebCrypto helpers for the client path: runs in Node and in browsers. */
import { concatBytes } from '../crypto/bytes.js';

const subtle = (): SubtleCrypto => globalThis.crypto.subtle;

function buf(b: Uint8Array): ArrayBuffer {
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
}

export function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  globalThis.crypto.getRandomValues(out);
  return out;
}

export async function hkdf(ikm: Uint8Array, info: Uint8Array, length: number, salt: Uint8Array = new Uint8Array(0)): Promise<Uint8Array> {
  const key = await subtle().importKey('raw', buf(ikm), 'HKDF', false, ['deriveBits']);
  return new Uint8Array(await subtle().deriveBits({ name: 'HKDF', hash: 'SHA-256', salt: buf(salt), info: buf(info) }, key, length * 8));
}

export async function hmacSha256(key: Uint8Array, data: Uint8Array): Promise<Uint8Array> {
  const k = await subtle().importKey('raw', buf(key), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return new Uint8Array(await subtle().sign('HMAC', k, buf(data)));
}

/** AES-256-GCM with a fresh random nonce; returns nonce || ciphertext || tag. */
export async function aesGcmSeal(key: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
  const nonce = randomBytes(12);
  const k = await subtle().importKey('raw', buf(key), 'AES-GCM', false, ['encrypt']);
  const ct = new Uint8Array(await subtle().encrypt({ name: 'AES-GCM', iv: buf(nonce), additionalData: buf(aad) }, k, buf(plaintext)));
  return concatBytes(nonce, ct);
}

/** Opens nonce || ciphertext || tag; null if it does not authenticate. */
export async function aesGcmOpen(key: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Promise<Uint8Array | null> {
  if (sealed.length < 12 + 16) return null;
  const k = await subtle().importKey('raw', buf(key), 'AES-GCM', false, ['decrypt']);
  try {
    return new Uint8Array(await subtle().decrypt({ name: 'AES-GCM', iv: buf(sealed.subarray(0, 12)), additionalData: buf(aad) }, k, buf(sealed.subarray(12))));
  } catch {
    return null;
  }
}
