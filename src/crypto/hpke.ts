/**
 * The request channel (DESIGN section 4), client side: HPKE (RFC 9180) base mode with the single
 * suite DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / AES-256-GCM, and the response encapsulation of
 * OHTTP (RFC 9458 section 4.4). Browser-safe: the primitives (X25519, HKDF and HMAC with SHA-256,
 * AES-GCM) are WebCrypto's; this file writes only the RFC 9180 composition. The HSM's side is
 * hpke-node.ts, which shares the byte layouts defined here, so both follow one reading of the RFC.
 */
import { ProtocolError } from '../protocol/errors.js';
import { concatBytes, fromBase64Url, utf8 } from './bytes.js';

// ---------------------------------------------------------------------------------------------
// Suite constants and byte layouts (RFC 9180 sections 4, 5.1, 7). Shared with hpke-node.ts.
// ---------------------------------------------------------------------------------------------

/**
 * AEAD ids (RFC 9180 section 7.3). The protocol uses only 2 (AES-256-GCM); 1 (AES-128-GCM) and
 * 0xFFFF (export-only) exist so the tests can run every base-mode RFC vector of this KEM and KDF.
 */
export type AeadId = 0x0001 | 0x0002 | 0xffff;

/** The protocol's AEAD: AES-256-GCM. */
export const AEAD_AES_256_GCM: AeadId = 0x0002;

const KEM_ID = 0x0020; // DHKEM(X25519, HKDF-SHA256)
const KDF_ID = 0x0001; // HKDF-SHA256
export const MODE_BASE = 0x00;

/** Nsecret, Nenc, Npk, Nsk of DHKEM(X25519) and Nh of HKDF-SHA256 are all 32 bytes. */
export const X25519_LENGTH = 32;
export const HASH_LENGTH = 32;
/** Nn and Nt of both AES-GCM variants. */
export const NONCE_LENGTH = 12;
export const TAG_LENGTH = 16;
/** RFC 9458: the response nonce is max(Nn, Nk) bytes, and so is the exported secret. */
export const RESPONSE_NONCE_LENGTH = 32;
/** The label of the response secret exported from the request context (DESIGN section 4). */
export const RESPONSE_EXPORT_LABEL = utf8('bkv/v1/response');

/** Nk of the AEAD, or 0 for export-only. */
export function aeadKeyLength(aead: AeadId): number {
  return aead === 0x0001 ? 16 : aead === 0x0002 ? 32 : 0;
}

function i2osp2(n: number): Uint8Array {
  return Uint8Array.of((n >> 8) & 0xff, n & 0xff);
}

const HPKE_V1 = utf8('HPKE-v1');
/** suite_id of the KEM's own derivations: "KEM" || I2OSP(kem_id, 2). */
export const KEM_SUITE_ID = concatBytes(utf8('KEM'), i2osp2(KEM_ID));

/** suite_id of the key schedule: "HPKE" || kem_id || kdf_id || aead_id. */
export function hpkeSuiteId(aead: AeadId): Uint8Array {
  return concatBytes(utf8('HPKE'), i2osp2(KEM_ID), i2osp2(KDF_ID), i2osp2(aead));
}

/** The HMAC input of LabeledExtract: "HPKE-v1" || suite_id || label || ikm. */
export function labeledIkm(suiteId: Uint8Array, label: string, ikm: Uint8Array): Uint8Array {
  return concatBytes(HPKE_V1, suiteId, utf8(label), ikm);
}

/** The info of LabeledExpand: I2OSP(L, 2) || "HPKE-v1" || suite_id || label || info. */
export function labeledInfo(suiteId: Uint8Array, label: string, info: Uint8Array, length: number): Uint8Array {
  return concatBytes(i2osp2(length), HPKE_V1, suiteId, utf8(label), info);
}

/**
 * HKDF-Extract's salt. RFC 5869 replaces an absent salt by HashLen zero bytes; HMAC pads keys with
 * zeros to the block size, so this is the same function, and WebCrypto refuses empty HMAC keys.
 */
export function extractSalt(salt: Uint8Array): Uint8Array {
  return salt.length === 0 ? new Uint8Array(HASH_LENGTH) : salt;
}

/** The largest L that HKDF-Expand (and so Export) can produce: 255 * Nh. */
export const MAX_EXPAND_LENGTH = 255 * HASH_LENGTH;

export function checkExportLength(length: number): void {
  if (!Number.isSafeInteger(length) || length < 0 || length > MAX_EXPAND_LENGTH) {
    throw new RangeError(`HPKE export length must be an integer in 0..${MAX_EXPAND_LENGTH}`);
  }
}

/**
 * RFC 9180 section 5.2: nonce = base_nonce XOR I2OSP(seq, Nn). seq is kept below 2^53, far below
 * the RFC's 2^96 - 1 limit, which is allowed (a lower message limit only refuses sooner).
 */
export function computeNonce(baseNonce: Uint8Array, seq: number): Uint8Array {
  if (!Number.isSafeInteger(seq) || seq < 0 || seq >= Number.MAX_SAFE_INTEGER) {
    throw new RangeError('HPKE message limit reached');
  }
  const nonce = Uint8Array.from(baseNonce);
  let rest = seq;
  for (let i = nonce.length - 1; i >= 0 && rest > 0; i--) {
    nonce[i] = nonce[i]! ^ rest % 256;
    rest = Math.floor(rest / 256);
  }
  return nonce;
}

/** RFC 9180 section 7.1.4: an all-zero X25519 output (a small-order peer key) must be refused. */
export function isAllZero(b: Uint8Array): boolean {
  let acc = 0;
  for (let i = 0; i < b.length; i++) acc |= b[i]!;
  return acc === 0;
}

/** PKCS #8 DER prefix of a raw X25519 private key (RFC 8410). */
export const X25519_PKCS8_PREFIX = Uint8Array.of(
  0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20,
);

/** The values the key schedule produces; exposed so the tests can compare them to the RFC vectors. */
export interface KeySchedule {
  key: Uint8Array;
  baseNonce: Uint8Array;
  exporterSecret: Uint8Array;
}

// ---------------------------------------------------------------------------------------------
// WebCrypto primitives
// ---------------------------------------------------------------------------------------------

function subtle(): SubtleCrypto {
  return globalThis.crypto.subtle;
}

/** WebCrypto's typings want ArrayBuffer-backed views; copy only when a view is not. */
function buf(b: Uint8Array): Uint8Array<ArrayBuffer> {
  return b.buffer instanceof ArrayBuffer ? (b as Uint8Array<ArrayBuffer>) : new Uint8Array(b);
}

const HMAC_SHA256 = { name: 'HMAC', hash: 'SHA-256' } as const;

function importHmacKey(key: Uint8Array): Promise<CryptoKey> {
  return subtle().importKey('raw', buf(key), HMAC_SHA256, false, ['sign']);
}

/** HKDF-Extract (RFC 5869 section 2.2), for the extracts that no expand follows directly. */
async function extract(salt: Uint8Array, ikm: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await subtle().sign('HMAC', await importHmacKey(extractSalt(salt)), buf(ikm)));
}

/**
 * HKDF-Expand (RFC 5869 section 2.3) from an imported PRK, for Export: WebCrypto's HKDF always
 * extracts first, so an expand on its own is written from HMAC.
 */
async function expand(prk: CryptoKey, info: Uint8Array, length: number): Promise<Uint8Array> {
  checkExportLength(length);
  const out = new Uint8Array(length);
  let t = new Uint8Array(0);
  for (let i = 1, off = 0; off < length; i++) {
    t = new Uint8Array(await subtle().sign('HMAC', prk, buf(concatBytes(t, info, Uint8Array.of(i)))));
    out.set(t.subarray(0, Math.min(t.length, length - off)), off);
    off += t.length;
  }
  return out;
}

function importHkdfKey(ikm: Uint8Array): Promise<CryptoKey> {
  return subtle().importKey('raw', buf(ikm), 'HKDF', false, ['deriveBits', 'deriveKey']);
}

function hkdfParams(salt: Uint8Array, info: Uint8Array): HkdfParams {
  return { name: 'HKDF', hash: 'SHA-256', salt: buf(salt), info: buf(info) };
}

/**
 * HKDF-Expand(HKDF-Extract(salt, ikm), info, L), which is exactly WebCrypto's HKDF. Every
 * LabeledExtract that a LabeledExpand consumes at once goes through here, on the platform's HKDF.
 */
async function hkdf(salt: Uint8Array, ikm: CryptoKey, info: Uint8Array, length: number): Promise<Uint8Array> {
  return new Uint8Array(await subtle().deriveBits(hkdfParams(salt, info), ikm, 8 * length));
}

function labeledExtract(suiteId: Uint8Array, salt: Uint8Array, label: string, ikm: Uint8Array): Promise<Uint8Array> {
  return extract(salt, labeledIkm(suiteId, label, ikm));
}

function labeledExpand(
  suiteId: Uint8Array,
  prk: CryptoKey,
  label: string,
  info: Uint8Array,
  length: number,
): Promise<Uint8Array> {
  return expand(prk, labeledInfo(suiteId, label, info, length), length);
}

/** Per-suite values of the key schedule that depend on no input: psk_id_hash and the "secret" IKM. */
interface SuiteConstants {
  pskIdHash: Promise<Uint8Array>;
  secretIkm: Promise<CryptoKey>;
}
const suiteConstants = new Map<AeadId, SuiteConstants>();

function constantsFor(aead: AeadId): SuiteConstants {
  let c = suiteConstants.get(aead);
  if (c === undefined) {
    const suiteId = hpkeSuiteId(aead);
    const empty = new Uint8Array(0);
    c = {
      pskIdHash: labeledExtract(suiteId, empty, 'psk_id_hash', empty),
      // psk is empty in base mode, so LabeledExtract(shared_secret, "secret", psk) has a fixed IKM.
      secretIkm: importHkdfKey(labeledIkm(suiteId, 'secret', empty)),
    };
    suiteConstants.set(aead, c);
    // A failure (no WebCrypto) reaches the caller through the await; it must not stay cached.
    const forget = (): void => void suiteConstants.delete(aead);
    c.pskIdHash.catch(forget);
    c.secretIkm.catch(forget);
  }
  return c;
}

function malformed(message: string): ProtocolError {
  return new ProtocolError('Malformed', message);
}

function checkLength(what: string, b: Uint8Array, length: number): void {
  if (b.length !== length) throw new RangeError(`${what} must be ${length} bytes`);
}

async function importPublicKey(pk: Uint8Array): Promise<CryptoKey> {
  try {
    return await subtle().importKey('raw', buf(pk), { name: 'X25519' }, true, []);
  } catch {
    throw malformed('invalid X25519 public key');
  }
}

/** Imports a raw private key and derives its public key (WebCrypto gives it through JWK). */
async function importPrivateKey(sk: Uint8Array): Promise<{ key: CryptoKey; publicKey: Uint8Array }> {
  checkLength('X25519 private key', sk, X25519_LENGTH);
  const key = await subtle().importKey(
    'pkcs8',
    buf(concatBytes(X25519_PKCS8_PREFIX, sk)),
    { name: 'X25519' },
    true,
    ['deriveBits'],
  );
  const jwk = await subtle().exportKey('jwk', key);
  if (typeof jwk.x !== 'string') throw new Error('WebCrypto returned no X25519 public key');
  return { key, publicKey: fromBase64Url(jwk.x) };
}

/** DH(sk, pk) with the RFC's all-zero check; a peer key the platform refuses is malformed. */
async function dh(sk: CryptoKey, pk: CryptoKey): Promise<Uint8Array> {
  let out: Uint8Array;
  try {
    out = new Uint8Array(await subtle().deriveBits({ name: 'X25519', public: pk }, sk, 8 * X25519_LENGTH));
  } catch {
    throw malformed('invalid X25519 public key');
  }
  if (isAllZero(out)) throw malformed('invalid X25519 public key');
  return out;
}

// ---------------------------------------------------------------------------------------------
// DHKEM(X25519, HKDF-SHA256) and the key schedule (RFC 9180 sections 4.1 and 5.1)
// ---------------------------------------------------------------------------------------------

/** ExtractAndExpand: shared_secret from the DH output and kem_context = enc || pkRm. */
async function extractAndExpand(dhOut: Uint8Array, kemContext: Uint8Array): Promise<Uint8Array> {
  const ikm = await importHkdfKey(labeledIkm(KEM_SUITE_ID, 'eae_prk', dhOut));
  const info = labeledInfo(KEM_SUITE_ID, 'shared_secret', kemContext, X25519_LENGTH);
  return hkdf(new Uint8Array(0), ikm, info, X25519_LENGTH);
}

async function ephemeralKey(skE: Uint8Array | undefined): Promise<{ key: CryptoKey; publicKey: Uint8Array }> {
  if (skE !== undefined) return importPrivateKey(skE);
  const pair = (await subtle().generateKey({ name: 'X25519' }, false, ['deriveBits'])) as CryptoKeyPair;
  return { key: pair.privateKey, publicKey: new Uint8Array(await subtle().exportKey('raw', pair.publicKey)) };
}

/**
 * Encap(pkR). The ephemeral key is fresh from WebCrypto unless `skE` is given, which only the
 * RFC vector tests do (a reused ephemeral key breaks the channel's confidentiality).
 */
export async function encap(
  pkR: Uint8Array,
  skE?: Uint8Array,
): Promise<{ sharedSecret: Uint8Array; enc: Uint8Array }> {
  checkLength('X25519 public key', pkR, X25519_LENGTH);
  const [recipient, ephemeral] = await Promise.all([importPublicKey(pkR), ephemeralKey(skE)]);
  const enc = ephemeral.publicKey;
  const dhOut = await dh(ephemeral.key, recipient);
  const sharedSecret = await extractAndExpand(dhOut, concatBytes(enc, pkR));
  return { sharedSecret, enc };
}

/** Decap(enc, skR). */
export async function decap(enc: Uint8Array, skR: Uint8Array): Promise<Uint8Array> {
  const recipient = await importPrivateKey(skR);
  if (enc.length !== X25519_LENGTH) throw malformed('invalid HPKE encapsulated key');
  const dhOut = await dh(recipient.key, await importPublicKey(enc));
  return extractAndExpand(dhOut, concatBytes(enc, recipient.publicKey));
}

/** The key schedule's context from info alone, so it can be computed while the KEM runs. */
async function keyScheduleContext(info: Uint8Array, aead: AeadId): Promise<Uint8Array> {
  const [pskIdHash, infoHash] = await Promise.all([
    constantsFor(aead).pskIdHash,
    labeledExtract(hpkeSuiteId(aead), new Uint8Array(0), 'info_hash', info),
  ]);
  return concatBytes(Uint8Array.of(MODE_BASE), pskIdHash, infoHash);
}

async function keyScheduleFrom(sharedSecret: Uint8Array, context: Uint8Array, aead: AeadId): Promise<KeySchedule> {
  const suiteId = hpkeSuiteId(aead);
  const secretIkm = await constantsFor(aead).secretIkm;
  const nk = aeadKeyLength(aead);
  const derive = (label: string, length: number): Promise<Uint8Array> =>
    length === 0
      ? Promise.resolve(new Uint8Array(0))
      : hkdf(sharedSecret, secretIkm, labeledInfo(suiteId, label, context, length), length);
  const [key, baseNonce, exporterSecret] = await Promise.all([
    derive('key', nk),
    derive('base_nonce', nk === 0 ? 0 : NONCE_LENGTH),
    derive('exp', HASH_LENGTH),
  ]);
  return { key, baseNonce, exporterSecret };
}

/** KeySchedule in base mode (psk and psk_id empty). */
export async function keySchedule(sharedSecret: Uint8Array, info: Uint8Array, aead: AeadId): Promise<KeySchedule> {
  return keyScheduleFrom(sharedSecret, await keyScheduleContext(info, aead), aead);
}

// ---------------------------------------------------------------------------------------------
// Contexts (RFC 9180 sections 5.2 and 5.3)
// ---------------------------------------------------------------------------------------------

export interface SenderContext {
  readonly enc: Uint8Array;
  /** Seals the next message; each call uses the next sequence number. */
  seal(aad: Uint8Array, plaintext: Uint8Array): Promise<Uint8Array>;
  /** Secret export (RFC 9180 section 5.3). */
  export(exporterContext: Uint8Array, length: number): Promise<Uint8Array>;
}

export interface ReceiverContext {
  /** Opens the next message; the sequence number advances only when it opens. */
  open(aad: Uint8Array, ciphertext: Uint8Array): Promise<Uint8Array>;
  export(exporterContext: Uint8Array, length: number): Promise<Uint8Array>;
}

/** The sequence-numbered AEAD and the exporter shared by both roles. */
class Context {
  private seq = 0;

  private constructor(
    private readonly baseNonce: Uint8Array,
    private readonly aeadKey: CryptoKey | undefined,
    private readonly exporterKey: CryptoKey,
    private readonly suiteId: Uint8Array,
  ) {}

  /** Imports the schedule's keys; only the base nonce stays as bytes. */
  static async create(schedule: KeySchedule, aead: AeadId): Promise<Context> {
    const [aeadKey, exporterKey] = await Promise.all([
      aead === 0xffff
        ? Promise.resolve(undefined)
        : subtle().importKey('raw', buf(schedule.key), { name: 'AES-GCM' }, false, ['encrypt', 'decrypt']),
      importHmacKey(schedule.exporterSecret),
    ]);
    return new Context(schedule.baseNonce, aeadKey, exporterKey, hpkeSuiteId(aead));
  }

  private key(): CryptoKey {
    if (this.aeadKey === undefined) throw new TypeError('export-only HPKE context has no AEAD');
    return this.aeadKey;
  }

  async seal(aad: Uint8Array, plaintext: Uint8Array): Promise<Uint8Array> {
    const key = this.key();
    // The sequence number is taken before any await, so concurrent seals never share a nonce.
    const nonce = computeNonce(this.baseNonce, this.seq);
    this.seq += 1;
    const params: AesGcmParams = { name: 'AES-GCM', iv: buf(nonce), additionalData: buf(aad), tagLength: 128 };
    return new Uint8Array(await subtle().encrypt(params, key, buf(plaintext)));
  }

  async open(aad: Uint8Array, ciphertext: Uint8Array): Promise<Uint8Array> {
    const key = this.key();
    const seq = this.seq;
    const nonce = computeNonce(this.baseNonce, seq);
    const params: AesGcmParams = { name: 'AES-GCM', iv: buf(nonce), additionalData: buf(aad), tagLength: 128 };
    let plaintext: ArrayBuffer;
    try {
      plaintext = await subtle().decrypt(params, key, buf(ciphertext));
    } catch {
      throw malformed('HPKE message does not decrypt');
    }
    if (this.seq !== seq) throw new Error('HPKE receiver context opened concurrently');
    this.seq = seq + 1;
    return new Uint8Array(plaintext);
  }

  export(exporterContext: Uint8Array, length: number): Promise<Uint8Array> {
    return labeledExpand(this.suiteId, this.exporterKey, 'sec', exporterContext, length);
  }
}

/**
 * SetupBaseS(pkR, info). `skE` exists only so tests can reproduce the RFC vectors; `aead` only so
 * they can run the vectors of the other AEADs.
 */
export async function setupBaseSender(
  pkR: Uint8Array,
  info: Uint8Array,
  opts: { skE?: Uint8Array; aead?: AeadId } = {},
): Promise<SenderContext> {
  const aead = opts.aead ?? AEAD_AES_256_GCM;
  const [{ sharedSecret, enc }, context] = await Promise.all([encap(pkR, opts.skE), keyScheduleContext(info, aead)]);
  const ctx = await Context.create(await keyScheduleFrom(sharedSecret, context, aead), aead);
  return {
    enc,
    seal: (aad, pt) => ctx.seal(aad, pt),
    export: (ec, l) => ctx.export(ec, l),
  };
}

/** SetupBaseR(enc, skR, info). The HSM uses hpke-node.ts; this one serves tests and browsers. */
export async function setupBaseReceiver(
  skR: Uint8Array,
  enc: Uint8Array,
  info: Uint8Array,
  opts: { aead?: AeadId } = {},
): Promise<ReceiverContext> {
  const aead = opts.aead ?? AEAD_AES_256_GCM;
  const [sharedSecret, context] = await Promise.all([decap(enc, skR), keyScheduleContext(info, aead)]);
  const ctx = await Context.create(await keyScheduleFrom(sharedSecret, context, aead), aead);
  return {
    open: (aad, ct) => ctx.open(aad, ct),
    export: (ec, l) => ctx.export(ec, l),
  };
}

// ---------------------------------------------------------------------------------------------
// The request channel: one sealed request, one OHTTP-style response (RFC 9458 section 4.4)
// ---------------------------------------------------------------------------------------------

export interface SealedRequest {
  enc: Uint8Array;
  ciphertext: Uint8Array;
  /**
   * Opens the HSM's response: response_nonce (32 bytes) || AES-256-GCM ciphertext under a key
   * derived from this request's exported secret. Throws ProtocolError('Malformed') on any failure.
   */
  openResponse(response: Uint8Array): Promise<Uint8Array>;
}

const RESPONSE_KEY_INFO = utf8('key');
const RESPONSE_NONCE_INFO = utf8('nonce');

/**
 * Seals one request to the fleet's `hpke` key. The caller supplies info (`bkv/v1` || fleet id) and
 * AAD (message type || version || routing hint || account tag), per DESIGN section 4.
 */
export async function sealRequest(
  recipientPublicKey: Uint8Array,
  info: Uint8Array,
  aad: Uint8Array,
  plaintext: Uint8Array,
): Promise<SealedRequest> {
  const ctx = await setupBaseSender(recipientPublicKey, info);
  const [ciphertext, secret] = await Promise.all([
    ctx.seal(aad, plaintext),
    // Exported now, and kept only as a non-extractable HKDF key, so the context need not live on.
    ctx.export(RESPONSE_EXPORT_LABEL, RESPONSE_NONCE_LENGTH).then(importHkdfKey),
  ]);
  const enc = ctx.enc;
  return {
    enc,
    ciphertext,
    openResponse: (response) => openResponse(enc, secret, response),
  };
}

/**
 * RFC 9458 section 4.4 with the secret as IKM: prk = Extract(enc || response_nonce, secret), and
 * key and nonce are Expand(prk, "key" / "nonce"), that is, two calls of the platform's HKDF.
 */
async function openResponse(enc: Uint8Array, secret: CryptoKey, response: Uint8Array): Promise<Uint8Array> {
  if (response.length < RESPONSE_NONCE_LENGTH + TAG_LENGTH) throw malformed('response is too short');
  const salt = concatBytes(enc, response.subarray(0, RESPONSE_NONCE_LENGTH));
  try {
    const [key, nonce] = await Promise.all([
      subtle().deriveKey(hkdfParams(salt, RESPONSE_KEY_INFO), secret, { name: 'AES-GCM', length: 256 }, false, [
        'decrypt',
      ]),
      hkdf(salt, secret, RESPONSE_NONCE_INFO, NONCE_LENGTH),
    ]);
    const params: AesGcmParams = { name: 'AES-GCM', iv: buf(nonce), tagLength: 128 };
    return new Uint8Array(await subtle().decrypt(params, key, buf(response.subarray(RESPONSE_NONCE_LENGTH))));
  } catch {
    throw malformed('response does not decrypt');
  }
}
