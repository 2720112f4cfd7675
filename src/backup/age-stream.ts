/**
 * Streaming age-encryption.org/v1 encryption and decryption to one X25519 recipient, on
 * node:crypto. Both are async generators over chunks, so a multi-GiB archive flows through with
 * one 64 KiB chunk in memory at a time and back-pressure comes from the consumer's pulls.
 *
 *   file     = header || nonce (16 bytes) || STREAM payload
 *   MAC key  = HKDF-SHA256(ikm = file key, salt = "", info = "header")
 *   MAC      = HMAC-SHA256(MAC key, header up to and including "---")
 *   payload key = HKDF-SHA256(ikm = file key, salt = nonce, info = "payload")
 *   chunk i  = ChaCha20-Poly1305(payload key, nonce = 11-byte big-endian i || last flag, 64 KiB of
 *              plaintext; fewer in the last chunk only)
 *
 * STREAM rules that decide truncation safety: the last chunk is flagged (0x01) and every other
 * chunk is full, so a cut at any point fails authentication or leaves no flagged chunk; the last
 * chunk is empty only when the whole plaintext is (age v1.0+ rejects an empty last chunk after
 * full ones, so we neither write nor accept one).
 *
 * Decryption yields each chunk only after its tag verifies, but a truncated or altered file is
 * detected only at the chunk where it happens: consumers must treat the output as provisional
 * until the generator finishes (restore writes to temporary names for this reason).
 */
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { constantTimeEqual, utf8 } from '../crypto/bytes.js';
import { parseIdentity, parseRecipient } from './age-key.js';
import { encodeHeader, encodeHeaderWithoutMac, readHeader, type Stanza } from './age-header.js';
import { unwrapX25519, wrapX25519, FILE_KEY_SIZE } from './age-x25519.js';
import { ByteReader } from './byte-reader.js';
import { BackupError } from './errors.js';

export const CHUNK_SIZE = 64 * 1024;
const TAG_SIZE = 16;
const NONCE_SIZE = 16;

export type RandomSource = (n: number) => Uint8Array;

export interface EncryptOptions {
  /** Source of the file key, ephemeral secret and nonce; node:crypto randomBytes by default. Tests only. */
  random?: RandomSource;
}

function hkdf(ikm: Uint8Array, salt: Uint8Array, info: string): Uint8Array {
  return new Uint8Array(hkdfSync('sha256', ikm, salt, utf8(info), 32));
}

export function headerMac(fileKey: Uint8Array, macInput: Uint8Array): Uint8Array {
  return new Uint8Array(createHmac('sha256', hkdf(fileKey, new Uint8Array(0), 'header')).update(macInput).digest());
}

export function payloadKey(fileKey: Uint8Array, nonce: Uint8Array): Uint8Array {
  return hkdf(fileKey, nonce, 'payload');
}

function chunkNonce(counter: number, last: boolean): Buffer {
  // 11-byte big-endian counter; a JS number reaches 2^53, far beyond any real file (2^69 bytes).
  const n = Buffer.alloc(12);
  n.writeUIntBE(Math.floor(counter / 2 ** 32), 3, 4);
  n.writeUInt32BE(counter >>> 0, 7);
  n[11] = last ? 1 : 0;
  return n;
}

/**
 * Seals one STREAM chunk as [ciphertext, tag]. Two pieces, not one: joining them would copy every
 * chunk and, measured, halve encryption speed; the writer hands both to one writev.
 */
function sealChunkParts(key: Uint8Array, counter: number, last: boolean, plaintext: Uint8Array): [Buffer, Buffer] {
  const c = createCipheriv('chacha20-poly1305', key, chunkNonce(counter, last), { authTagLength: TAG_SIZE });
  const body = c.update(plaintext);
  c.final();
  return [body, c.getAuthTag()];
}

/** Seals one STREAM chunk. Exported for tests that build deliberately malformed files. */
export function sealChunk(key: Uint8Array, counter: number, last: boolean, plaintext: Uint8Array): Buffer {
  return Buffer.concat(sealChunkParts(key, counter, last, plaintext));
}

/** Opens one STREAM chunk, or returns null if its tag does not verify under this nonce. */
function openChunk(key: Uint8Array, counter: number, last: boolean, sealed: Uint8Array): Buffer | null {
  const d = createDecipheriv('chacha20-poly1305', key, chunkNonce(counter, last), { authTagLength: TAG_SIZE });
  d.setAuthTag(sealed.subarray(sealed.length - TAG_SIZE));
  const body = d.update(sealed.subarray(0, sealed.length - TAG_SIZE));
  try {
    d.final();
  } catch {
    return null;
  }
  return body;
}

/** Writes the header for `stanzas` under `fileKey`. */
export function sealHeader(stanzas: readonly Stanza[], fileKey: Uint8Array): Uint8Array {
  return encodeHeader(stanzas, headerMac(fileKey, encodeHeaderWithoutMac(stanzas)));
}

/** Encrypts `plaintext` to the `age1...` recipient. */
export async function* encryptAge(
  plaintext: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  recipient: string,
  options: EncryptOptions = {},
): AsyncGenerator<Uint8Array, void, undefined> {
  const random = options.random ?? ((n: number) => new Uint8Array(randomBytes(n)));
  const recipientKey = parseRecipient(recipient);
  const fileKey = random(FILE_KEY_SIZE);
  const stanza = wrapX25519(fileKey, recipientKey, random(32));
  const nonce = random(NONCE_SIZE);
  const key = payloadKey(fileKey, nonce);
  yield Buffer.concat([sealHeader([stanza], fileKey), nonce]);

  // A full chunk is held back until more input arrives, because only then is it known not to be
  // the last one.
  const buf = Buffer.allocUnsafe(CHUNK_SIZE);
  let fill = 0;
  let counter = 0;
  for await (const piece of plaintext) {
    let off = 0;
    while (off < piece.length) {
      if (fill === CHUNK_SIZE) {
        yield* sealChunkParts(key, counter++, false, buf);
        fill = 0;
      }
      const n = Math.min(CHUNK_SIZE - fill, piece.length - off);
      buf.set(piece.subarray(off, off + n), fill);
      fill += n;
      off += n;
    }
  }
  yield* sealChunkParts(key, counter, true, buf.subarray(0, fill));
}

/** Decrypts an age file with the `AGE-SECRET-KEY-1...` identity. See the module comment. */
export async function* decryptAge(
  ciphertext: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  identity: string,
): AsyncGenerator<Uint8Array, void, undefined> {
  const secret = parseIdentity(identity);
  const reader = new ByteReader(toAsync(ciphertext));
  try {
    const header = await readHeader(reader);
    const fileKey = unwrapX25519(header.stanzas, secret);
    if (fileKey === null) {
      throw new BackupError('WrongKey', 'this key does not open the archive (wrong key, or its header was altered)');
    }
    if (!constantTimeEqual(headerMac(fileKey, header.macInput), header.mac)) {
      throw new BackupError('Tampered', 'the age header MAC does not verify: the header was altered');
    }
    const nonce = await reader.read(NONCE_SIZE);
    if (nonce.length < NONCE_SIZE) throw new BackupError('Truncated', 'the archive ends before its payload');
    const key = payloadKey(fileKey, Buffer.from(nonce));

    for (let counter = 0; ; counter++) {
      const sealed = await reader.read(CHUNK_SIZE + TAG_SIZE);
      if (sealed.length < CHUNK_SIZE + TAG_SIZE || (await reader.atEnd())) {
        // The stream ends with this chunk, so it must be the flagged last one.
        if (sealed.length < TAG_SIZE) {
          throw new BackupError('Truncated', 'the archive ends without its final chunk');
        }
        const plain = openChunk(key, counter, true, sealed);
        if (plain === null) {
          if (sealed.length === CHUNK_SIZE + TAG_SIZE && openChunk(key, counter, false, sealed) !== null) {
            throw new BackupError('Truncated', 'the archive ends after a full chunk that is not the last one');
          }
          throw new BackupError('Tampered', `payload chunk ${counter} does not authenticate (altered or cut short)`);
        }
        if (plain.length === 0 && counter > 0) {
          throw new BackupError('Malformed', 'the final chunk is empty but the payload is not');
        }
        if (plain.length > 0) yield plain;
        return;
      }
      const plain = openChunk(key, counter, false, sealed);
      if (plain === null) {
        if (openChunk(key, counter, true, sealed) !== null) {
          throw new BackupError('Tampered', 'unexpected data after the final chunk');
        }
        throw new BackupError('Tampered', `payload chunk ${counter} does not authenticate`);
      }
      yield plain;
    }
  } finally {
    await reader.close();
  }
}

async function* toAsync(src: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  yield* src;
}

/** Collects an async stream into one buffer. For small objects (manifests, tests) only. */
export async function collect(src: AsyncIterable<Uint8Array>, limit = Number.MAX_SAFE_INTEGER): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let n = 0;
  for await (const p of src) {
    n += p.length;
    if (n > limit) throw new BackupError('Malformed', `object larger than ${limit} bytes`);
    parts.push(p);
  }
  return new Uint8Array(Buffer.concat(parts));
}
