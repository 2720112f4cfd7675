/**
 * X25519 (RFC 7748) on raw 32-byte keys, through node:crypto. Node takes keys as DER, so the raw
 * bytes are wrapped in the fixed PKCS#8 / SPKI prefixes for the X25519 OID (1.3.101.110).
 */
import { createPrivateKey, createPublicKey, diffieHellman, type KeyObject } from 'node:crypto';
import { BackupError } from './errors.js';

const PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');

function checkLength(b: Uint8Array, what: string): void {
  if (b.length !== 32) throw new BackupError('BadArgument', `X25519 ${what} must be 32 bytes`);
}

function privateKeyObject(secret: Uint8Array): KeyObject {
  checkLength(secret, 'secret key');
  return createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, secret]), format: 'der', type: 'pkcs8' });
}

function publicKeyObject(pub: Uint8Array): KeyObject {
  checkLength(pub, 'public key');
  return createPublicKey({ key: Buffer.concat([SPKI_PREFIX, pub]), format: 'der', type: 'spki' });
}

/** The public key X25519(secret, 9). Clamping happens inside, as RFC 7748 specifies. */
export function x25519PublicKey(secret: Uint8Array): Uint8Array {
  const der = createPublicKey(privateKeyObject(secret)).export({ format: 'der', type: 'spki' });
  return new Uint8Array(der.subarray(der.length - 32));
}

/**
 * The shared secret X25519(secret, pub). May be all zeros for low-order points: callers that
 * must reject those (age does) check it themselves.
 */
export function x25519(secret: Uint8Array, pub: Uint8Array): Uint8Array {
  return new Uint8Array(diffieHellman({ privateKey: privateKeyObject(secret), publicKey: publicKeyObject(pub) }));
}
