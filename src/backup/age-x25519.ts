/**
 * The age X25519 recipient stanza (age-encryption.org/v1/X25519):
 *
 *   -> X25519 <base64(ephemeral share)>
 *   <base64(ChaCha20-Poly1305(wrap key, nonce = 12 zero bytes, file key))>
 *
 *   wrap key = HKDF-SHA256(ikm = X25519(secret, peer), salt = share || recipient,
 *                          info = "age-encryption.org/v1/X25519", 32 bytes)
 *
 * A zero nonce is safe because every wrap key is used once: the ephemeral share is fresh per file.
 */
import { createCipheriv, createDecipheriv, hkdfSync } from 'node:crypto';
import { utf8 } from '../crypto/bytes.js';
import { fromBase64NoPad, toBase64NoPad, type Stanza } from './age-header.js';
import { BackupError } from './errors.js';
import { x25519, x25519PublicKey } from './x25519.js';

const LABEL = utf8('age-encryption.org/v1/X25519');
const ZERO_NONCE = new Uint8Array(12);
export const FILE_KEY_SIZE = 16;

function wrapKey(shared: Uint8Array, share: Uint8Array, recipient: Uint8Array): Uint8Array {
  return new Uint8Array(hkdfSync('sha256', shared, Buffer.concat([share, recipient]), LABEL, 32));
}

function isAllZero(b: Uint8Array): boolean {
  let acc = 0;
  for (const v of b) acc |= v;
  return acc === 0;
}

/** Wraps `fileKey` to `recipient`; `ephemeralSecret` must be 32 fresh random bytes. */
export function wrapX25519(fileKey: Uint8Array, recipient: Uint8Array, ephemeralSecret: Uint8Array): Stanza {
  const share = x25519PublicKey(ephemeralSecret);
  const shared = x25519(ephemeralSecret, recipient);
  if (isAllZero(shared)) throw new BackupError('BadArgument', 'invalid X25519 recipient (low-order point)');
  const c = createCipheriv('chacha20-poly1305', wrapKey(shared, share, recipient), ZERO_NONCE, { authTagLength: 16 });
  const body = Buffer.concat([c.update(fileKey), c.final(), c.getAuthTag()]);
  return { type: 'X25519', args: [toBase64NoPad(share)], body };
}

/**
 * Finds the X25519 stanza that opens with `secret` and returns the file key, or null when none
 * does (a different recipient). A malformed X25519 stanza is an error, not a non-match: age
 * treats it so, and it can only come from a broken or hostile writer.
 */
export function unwrapX25519(stanzas: readonly Stanza[], secret: Uint8Array): Uint8Array | null {
  const ourPublic = x25519PublicKey(secret);
  for (const st of stanzas) {
    if (st.type !== 'X25519') continue;
    if (st.args.length !== 1) throw new BackupError('Malformed', 'age header: X25519 stanza needs exactly one argument');
    let share: Uint8Array;
    try {
      share = fromBase64NoPad(st.args[0]!);
    } catch {
      throw new BackupError('Malformed', 'age header: X25519 share is not canonical base64');
    }
    if (share.length !== 32) throw new BackupError('Malformed', 'age header: X25519 share must be 32 bytes');
    if (st.body.length !== FILE_KEY_SIZE + 16) throw new BackupError('Malformed', 'age header: X25519 body must be 32 bytes');
    let shared: Uint8Array;
    try {
      shared = x25519(secret, share);
    } catch (e) {
      // OpenSSL refuses low-order points itself; same outcome as the all-zero check below.
      throw new BackupError('Malformed', 'age header: X25519 share is a low-order point', { cause: e });
    }
    if (isAllZero(shared)) throw new BackupError('Malformed', 'age header: X25519 share is a low-order point');
    const d = createDecipheriv('chacha20-poly1305', wrapKey(shared, share, ourPublic), ZERO_NONCE, { authTagLength: 16 });
    d.setAuthTag(st.body.subarray(FILE_KEY_SIZE));
    try {
      const key = Buffer.concat([d.update(st.body.subarray(0, FILE_KEY_SIZE)), d.final()]);
      return new Uint8Array(key);
    } catch {
      continue; // Not ours: another recipient's stanza.
    }
  }
  return null;
}
