/**
 * The request channel (DESIGN section 4), HSM side: HPKE (RFC 9180) base mode receiver and the
 * OHTTP-style response (RFC 9458 section 4.4) on node:crypto. Synchronous, because it runs inside
 * the HSM core's request handling, and it draws no randomness: the response nonce comes from the
 * caller's platform RNG. The byte layouts are shared with the WebCrypto client in hpke.ts.
 */
import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  type KeyObject,
} from 'node:crypto';
import { ProtocolError } from '../protocol/errors.js';
import { concatBytes, toHex, utf8 } from './bytes.js';
import { sha256 } from './sha256.js';
import {
  AEAD_AES_256_GCM,
  HASH_LENGTH,
  KEM_SUITE_ID,
  MODE_BASE,
  NONCE_LENGTH,
  RESPONSE_EXPORT_LABEL,
  RESPONSE_NONCE_LENGTH,
  TAG_LENGTH,
  X25519_LENGTH,
  X25519_PKCS8_PREFIX,
  aeadKeyLength,
  checkExportLength,
  computeNonce,
  extractSalt,
  hpkeSuiteId,
  isAllZero,
  labeledIkm,
  labeledInfo,
  type AeadId,
  type KeySchedule,
} from './hpke.js';

export type { AeadId, KeySchedule } from './hpke.js';

// ---------------------------------------------------------------------------------------------
// node:crypto primitives
// ---------------------------------------------------------------------------------------------

/** Node returns Buffers, often views into a shared pool; callers get plain, owned Uint8Arrays. */
function owned(b: Uint8Array): Uint8Array {
  return new Uint8Array(b);
}

function hmac(key: Uint8Array, data: Uint8Array): Uint8Array {
  return owned(createHmac('sha256', key).update(data).digest());
}

/** HKDF-Extract (RFC 5869 section 2.2). */
function extract(salt: Uint8Array, ikm: Uint8Array): Uint8Array {
  return hmac(extractSalt(salt), ikm);
}

/** HKDF-Expand (RFC 5869 section 2.3); node's hkdfSync cannot take a PRK without extracting. */
function expand(prk: Uint8Array, info: Uint8Array, length: number): Uint8Array {
  checkExportLength(length);
  const out = new Uint8Array(length);
  let t: Uint8Array = new Uint8Array(0);
  for (let i = 1, off = 0; off < length; i++) {
    t = hmac(prk, concatBytes(t, info, Uint8Array.of(i)));
    out.set(t.subarray(0, Math.min(t.length, length - off)), off);
    off += t.length;
  }
  return out;
}

function labeledExtract(suiteId: Uint8Array, salt: Uint8Array, label: string, ikm: Uint8Array): Uint8Array {
  return extract(salt, labeledIkm(suiteId, label, ikm));
}

function labeledExpand(suiteId: Uint8Array, prk: Uint8Array, label: string, info: Uint8Array, length: number): Uint8Array {
  return expand(prk, labeledInfo(suiteId, label, info, length), length);
}

function aesGcmName(aead: AeadId): 'aes-128-gcm' | 'aes-256-gcm' {
  if (aead === 0xffff) throw new TypeError('export-only HPKE context has no AEAD');
  return aead === 0x0001 ? 'aes-128-gcm' : 'aes-256-gcm';
}

function aeadSeal(aead: AeadId, key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, pt: Uint8Array): Uint8Array {
  const c = createCipheriv(aesGcmName(aead), key, nonce, { authTagLength: TAG_LENGTH });
  c.setAAD(aad);
  return concatBytes(c.update(pt), c.final(), c.getAuthTag());
}

/** AES-GCM open. authTagLength pins the tag to 16 bytes: node otherwise accepts truncated tags. */
function aeadOpen(aead: AeadId, key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, ct: Uint8Array): Uint8Array {
  if (ct.length < TAG_LENGTH) throw malformed('HPKE message does not decrypt');
  const d = createDecipheriv(aesGcmName(aead), key, nonce, { authTagLength: TAG_LENGTH });
  d.setAAD(aad);
  d.setAuthTag(ct.subarray(ct.length - TAG_LENGTH));
  const body = d.update(ct.subarray(0, ct.length - TAG_LENGTH));
  try {
    return concatBytes(body, d.final());
  } catch {
    throw malformed('HPKE message does not decrypt');
  }
}

function malformed(message: string): ProtocolError {
  return new ProtocolError('Malformed', message);
}

function checkLength(what: string, b: Uint8Array, length: number): void {
  if (b.length !== length) throw new RangeError(`${what} must be ${length} bytes`);
}

/** Public keys go in as JWK: an order of magnitude faster in node than SPKI DER. */
function importPublicKey(pk: Uint8Array): KeyObject {
  return createPublicKey({
    key: { kty: 'OKP', crv: 'X25519', x: Buffer.from(pk).toString('base64url') },
    format: 'jwk',
  });
}

interface PrivateKey {
  key: KeyObject;
  publicKey: Uint8Array;
}

/**
 * Importing an X25519 private key costs node several DH operations (PKCS #8 decoding), so the
 * receiver's few long-lived keys are cached. Keyed by a hash, so that the key bytes themselves do
 * not linger in an unerasable string; bounded, because callers may pass many keys (the tests do).
 */
const PRIVATE_KEY_CACHE_SIZE = 8;
const privateKeyCache = new Map<string, PrivateKey>();
const KEY_CACHE_LABEL = utf8('bkv/hpke-node/key-cache');

function importPrivateKeyUncached(sk: Uint8Array): PrivateKey {
  const key = createPrivateKey({ key: Buffer.from(concatBytes(X25519_PKCS8_PREFIX, sk)), format: 'der', type: 'pkcs8' });
  const jwk = createPublicKey(key).export({ format: 'jwk' });
  if (typeof jwk.x !== 'string') throw new Error('node returned no X25519 public key');
  return { key, publicKey: owned(Buffer.from(jwk.x, 'base64url')) };
}

function importPrivateKey(sk: Uint8Array): PrivateKey {
  checkLength('X25519 private key', sk, X25519_LENGTH);
  const id = toHex(sha256(KEY_CACHE_LABEL, sk));
  let entry = privateKeyCache.get(id);
  if (entry === undefined) {
    entry = importPrivateKeyUncached(sk);
    if (privateKeyCache.size >= PRIVATE_KEY_CACHE_SIZE) {
      const oldest = privateKeyCache.keys().next();
      if (oldest.done !== true) privateKeyCache.delete(oldest.value);
    }
    privateKeyCache.set(id, entry);
  }
  return entry;
}

/** The X25519 public key of a raw private key. */
export function x25519PublicKey(privateKey: Uint8Array): Uint8Array {
  return Uint8Array.from(importPrivateKey(privateKey).publicKey);
}

/** DH(sk, pk) with the RFC's all-zero check; a peer key the platform refuses is malformed. */
function dh(sk: KeyObject, pk: Uint8Array): Uint8Array {
  let out: Uint8Array;
  try {
    out = owned(diffieHellman({ privateKey: sk, publicKey: importPublicKey(pk) }));
  } catch {
    throw malformed('invalid X25519 public key');
  }
  if (isAllZero(out)) throw malformed('invalid X25519 public key');
  return out;
}

// ---------------------------------------------------------------------------------------------
// DHKEM(X25519, HKDF-SHA256) and the key schedule (RFC 9180 sections 4.1 and 5.1)
// ---------------------------------------------------------------------------------------------

function extractAndExpand(dhOut: Uint8Array, kemContext: Uint8Array): Uint8Array {
  const prk = labeledExtract(KEM_SUITE_ID, new Uint8Array(0), 'eae_prk', dhOut);
  return labeledExpand(KEM_SUITE_ID, prk, 'shared_secret', kemContext, X25519_LENGTH);
}

/** Encap(pkR) with a given ephemeral key: deterministic, so for tests and benchmarks only. */
export function encapSync(pkR: Uint8Array, skE: Uint8Array): { sharedSecret: Uint8Array; enc: Uint8Array } {
  checkLength('X25519 public key', pkR, X25519_LENGTH);
  // Not cached: an ephemeral key is used once, and caching it would keep it alive.
  checkLength('X25519 private key', skE, X25519_LENGTH);
  const ephemeral = importPrivateKeyUncached(skE);
  const dhOut = dh(ephemeral.key, pkR);
  return { sharedSecret: extractAndExpand(dhOut, concatBytes(ephemeral.publicKey, pkR)), enc: ephemeral.publicKey };
}

/** Decap(enc, skR). */
export function decapSync(enc: Uint8Array, skR: Uint8Array): Uint8Array {
  return decapWith(enc, importPrivateKey(skR));
}

function decapWith(enc: Uint8Array, recipient: PrivateKey): Uint8Array {
  if (enc.length !== X25519_LENGTH) throw malformed('invalid HPKE encapsulated key');
  const dhOut = dh(recipient.key, enc);
  return extractAndExpand(dhOut, concatBytes(enc, recipient.publicKey));
}

/** psk_id_hash is the same for every base-mode context of a suite; computed once per AEAD. */
const pskIdHashes = new Map<AeadId, Uint8Array>();

/** KeySchedule in base mode (psk and psk_id empty). */
export function keyScheduleSync(sharedSecret: Uint8Array, info: Uint8Array, aead: AeadId): KeySchedule {
  const suiteId = hpkeSuiteId(aead);
  const empty = new Uint8Array(0);
  let pskIdHash = pskIdHashes.get(aead);
  if (pskIdHash === undefined) {
    pskIdHash = labeledExtract(suiteId, empty, 'psk_id_hash', empty);
    pskIdHashes.set(aead, pskIdHash);
  }
  const infoHash = labeledExtract(suiteId, empty, 'info_hash', info);
  const context = concatBytes(Uint8Array.of(MODE_BASE), pskIdHash, infoHash);
  const secret = labeledExtract(suiteId, sharedSecret, 'secret', empty);
  const nk = aeadKeyLength(aead);
  return {
    key: nk === 0 ? empty : labeledExpand(suiteId, secret, 'key', context, nk),
    baseNonce: nk === 0 ? empty : labeledExpand(suiteId, secret, 'base_nonce', context, NONCE_LENGTH),
    exporterSecret: labeledExpand(suiteId, secret, 'exp', context, HASH_LENGTH),
  };
}

// ---------------------------------------------------------------------------------------------
// Contexts (RFC 9180 sections 5.2 and 5.3)
// ---------------------------------------------------------------------------------------------

export interface SenderContextSync {
  readonly enc: Uint8Array;
  /** Seals the next message; each call uses the next sequence number. */
  seal(aad: Uint8Array, plaintext: Uint8Array): Uint8Array;
  /** Secret export (RFC 9180 section 5.3). */
  export(exporterContext: Uint8Array, length: number): Uint8Array;
}

export interface ReceiverContextSync {
  /** Opens the next message; the sequence number advances only when it opens. */
  open(aad: Uint8Array, ciphertext: Uint8Array): Uint8Array;
  export(exporterContext: Uint8Array, length: number): Uint8Array;
}

class Context {
  private seq = 0;
  private readonly suiteId: Uint8Array;

  constructor(
    private readonly schedule: KeySchedule,
    private readonly aead: AeadId,
  ) {
    this.suiteId = hpkeSuiteId(aead);
  }

  seal(aad: Uint8Array, plaintext: Uint8Array): Uint8Array {
    const ct = aeadSeal(this.aead, this.schedule.key, computeNonce(this.schedule.baseNonce, this.seq), aad, plaintext);
    this.seq += 1;
    return ct;
  }

  open(aad: Uint8Array, ciphertext: Uint8Array): Uint8Array {
    const pt = aeadOpen(this.aead, this.schedule.key, computeNonce(this.schedule.baseNonce, this.seq), aad, ciphertext);
    this.seq += 1;
    return pt;
  }

  export(exporterContext: Uint8Array, length: number): Uint8Array {
    return labeledExpand(this.suiteId, this.schedule.exporterSecret, 'sec', exporterContext, length);
  }
}

/** SetupBaseR(enc, skR, info). `aead` other than AES-256-GCM exists only for the RFC vectors. */
export function setupBaseReceiver(
  skR: Uint8Array,
  enc: Uint8Array,
  info: Uint8Array,
  opts: { aead?: AeadId } = {},
): ReceiverContextSync {
  return receiverWith(importPrivateKey(skR), enc, info, opts.aead ?? AEAD_AES_256_GCM);
}

function receiverWith(recipient: PrivateKey, enc: Uint8Array, info: Uint8Array, aead: AeadId): ReceiverContextSync {
  const ctx = new Context(keyScheduleSync(decapWith(enc, recipient), info, aead), aead);
  return {
    open: (aad, ct) => ctx.open(aad, ct),
    export: (ec, l) => ctx.export(ec, l),
  };
}

/** SetupBaseS(pkR, info) with a given ephemeral key: for tests and benchmarks only. */
export function setupBaseSenderSync(
  pkR: Uint8Array,
  info: Uint8Array,
  skE: Uint8Array,
  opts: { aead?: AeadId } = {},
): SenderContextSync {
  const aead = opts.aead ?? AEAD_AES_256_GCM;
  const { sharedSecret, enc } = encapSync(pkR, skE);
  const ctx = new Context(keyScheduleSync(sharedSecret, info, aead), aead);
  return {
    enc,
    seal: (aad, pt) => ctx.seal(aad, pt),
    export: (ec, l) => ctx.export(ec, l),
  };
}

// ---------------------------------------------------------------------------------------------
// The request channel: one opened request, one OHTTP-style response (RFC 9458 section 4.4)
// ---------------------------------------------------------------------------------------------

const RESPONSE_KEY_INFO = utf8('key');
const RESPONSE_NONCE_INFO = utf8('nonce');

export interface OpenedRequest {
  plaintext: Uint8Array;
  /**
   * Seals the response: response_nonce || AES-256-GCM(key, nonce, aad = empty, plaintext), with
   * key and nonce from HKDF(salt = enc || response_nonce, ikm = the exported response secret).
   * The nonce must be 32 fresh bytes from the caller's RNG (the core draws no randomness itself).
   */
  sealResponse(plaintext: Uint8Array, responseNonce: Uint8Array): Uint8Array;
}

/**
 * Opens one request sealed to the fleet's `hpke` key. Any failure of the peer's data (enc,
 * ciphertext, or the info and AAD it was bound to) is ProtocolError('Malformed') with one message,
 * so the error says nothing about which part failed.
 */
export function openRequest(
  recipientPrivateKey: Uint8Array,
  info: Uint8Array,
  aad: Uint8Array,
  enc: Uint8Array,
  ciphertext: Uint8Array,
): OpenedRequest {
  // A wrong-length own key is the caller's bug, not a malformed request: let its RangeError out.
  const recipient = importPrivateKey(recipientPrivateKey);
  let ctx: ReceiverContextSync;
  let plaintext: Uint8Array;
  try {
    ctx = receiverWith(recipient, enc, info, AEAD_AES_256_GCM);
    plaintext = ctx.open(aad, ciphertext);
  } catch {
    throw malformed('request does not decrypt');
  }
  const secret = ctx.export(RESPONSE_EXPORT_LABEL, RESPONSE_NONCE_LENGTH);
  const encCopy = Uint8Array.from(enc);
  return {
    plaintext,
    sealResponse: (pt, responseNonce) => {
      checkLength('response nonce', responseNonce, RESPONSE_NONCE_LENGTH);
      const prk = extract(concatBytes(encCopy, responseNonce), secret);
      const key = expand(prk, RESPONSE_KEY_INFO, aeadKeyLength(AEAD_AES_256_GCM));
      const nonce = expand(prk, RESPONSE_NONCE_INFO, NONCE_LENGTH);
      return concatBytes(responseNonce, aeadSeal(AEAD_AES_256_GCM, key, nonce, new Uint8Array(0), pt));
    },
  };
}

/**
 * The client side of the channel on node:crypto: the same format as `sealRequest` in hpke.ts
 * (WebCrypto), about three times cheaper per request. `ephemeralSecret` is 32 fresh random bytes
 * from the caller. The SDK uses this when it runs on Node.
 */
export function sealRequestSync(
  recipientPublicKey: Uint8Array,
  info: Uint8Array,
  aad: Uint8Array,
  plaintext: Uint8Array,
  ephemeralSecret: Uint8Array,
): { enc: Uint8Array; ciphertext: Uint8Array; openResponse(response: Uint8Array): Uint8Array } {
  const sender = setupBaseSenderSync(recipientPublicKey, info, ephemeralSecret);
  const ciphertext = sender.seal(aad, plaintext);
  const secret = sender.export(RESPONSE_EXPORT_LABEL, RESPONSE_NONCE_LENGTH);
  const enc = sender.enc;
  return {
    enc,
    ciphertext,
    openResponse: (response) => {
      if (response.length < RESPONSE_NONCE_LENGTH + TAG_LENGTH) throw malformed('response does not decrypt');
      const responseNonce = response.subarray(0, RESPONSE_NONCE_LENGTH);
      const prk = extract(concatBytes(enc, responseNonce), secret);
      const key = expand(prk, RESPONSE_KEY_INFO, aeadKeyLength(AEAD_AES_256_GCM));
      const nonce = expand(prk, RESPONSE_NONCE_INFO, NONCE_LENGTH);
      try {
        return aeadOpen(AEAD_AES_256_GCM, key, nonce, new Uint8Array(0), response.subarray(RESPONSE_NONCE_LENGTH));
      } catch {
        throw malformed('response does not decrypt');
      }
    },
  };
}
