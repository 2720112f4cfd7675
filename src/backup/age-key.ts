/**
 * The age X25519 identity derived from the backup key K (DESIGN section 8): anyone holding K can
 * rebuild the identity and decrypt archives with any age implementation (`export-key` prints it).
 *
 *   secret    = HKDF-SHA256(ikm = K, salt = "", info = "bkv/v1/age-identity", 32 bytes)
 *   identity  = Bech32("age-secret-key-", secret), uppercased  -> AGE-SECRET-KEY-1...
 *   recipient = Bech32("age", X25519(secret, 9))                -> age1...
 *
 * The fixed label separates this use of K from every other key derived from it.
 */
import { hkdfSync } from 'node:crypto';
import { utf8 } from '../crypto/bytes.js';
import { bech32Decode, bech32Encode, fromWords, toWords } from './bech32.js';
import { BackupError } from './errors.js';
import { x25519PublicKey } from './x25519.js';

export const AGE_IDENTITY_LABEL = 'bkv/v1/age-identity';
const IDENTITY_HRP = 'age-secret-key-';
const RECIPIENT_HRP = 'age';

export interface AgeKeyPair {
  /** `AGE-SECRET-KEY-1...`: what `age -d -i` reads. Secret. */
  identity: string;
  /** `age1...`: what `age -r` reads. Public. */
  recipient: string;
}

/** Derives the age identity and recipient from the 32-byte backup key K. */
export function deriveAgeKeyPair(k: Uint8Array): AgeKeyPair {
  if (k.length !== 32) throw new BackupError('BadArgument', 'the backup key K must be 32 bytes');
  const secret = new Uint8Array(hkdfSync('sha256', k, new Uint8Array(0), utf8(AGE_IDENTITY_LABEL), 32));
  return { identity: encodeIdentity(secret), recipient: encodeRecipient(x25519PublicKey(secret)) };
}

export function encodeIdentity(secret: Uint8Array): string {
  if (secret.length !== 32) throw new BackupError('BadArgument', 'an age identity is 32 bytes');
  return bech32Encode(IDENTITY_HRP, toWords(secret)).toUpperCase();
}

export function encodeRecipient(publicKey: Uint8Array): string {
  if (publicKey.length !== 32) throw new BackupError('BadArgument', 'an age recipient is 32 bytes');
  return bech32Encode(RECIPIENT_HRP, toWords(publicKey));
}

function decodeKey(s: string, hrp: string, what: string): Uint8Array {
  let decoded: { hrp: string; words: number[] };
  try {
    decoded = bech32Decode(s.trim());
  } catch (e) {
    throw new BackupError('Malformed', `not a valid ${what}`, { cause: e });
  }
  if (decoded.hrp !== hrp) throw new BackupError('Malformed', `not an ${what} (expected ${hrp}1...)`);
  const bytes = fromWords(decoded.words);
  if (bytes.length !== 32) throw new BackupError('Malformed', `${what} has the wrong length`);
  return bytes;
}

/** Parses `AGE-SECRET-KEY-1...` into the 32-byte X25519 secret. */
export function parseIdentity(identity: string): Uint8Array {
  return decodeKey(identity, IDENTITY_HRP, 'age X25519 identity');
}

/** Parses `age1...` into the 32-byte X25519 public key. */
export function parseRecipient(recipient: string): Uint8Array {
  return decodeKey(recipient, RECIPIENT_HRP, 'age X25519 recipient');
}

export function identityToRecipient(identity: string): string {
  return encodeRecipient(x25519PublicKey(parseIdentity(identity)));
}
