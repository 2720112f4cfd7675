/**
 * Signed notes (c2sp.org/signed-note): text signed by one or more keys.
 *
 *     <text, ending in a newline>
 *     <empty line>
 *     — <key name> base64(uint32 key ID || signature)
 *     ...
 *
 * Two signature types are implemented: Ed25519 (0x01, signed-note "Ed25519 signatures") and the
 * timestamped Ed25519 witness cosignature (0x04, c2sp.org/tlog-cosignature, `cosignature/v1`).
 * Keys travel as verifier keys (`<name>+<hex key ID>+base64(type || public key)`) and signer keys
 * (`PRIVATE+KEY+<name>+<hex key ID>+base64(type || 32-byte seed)`), the encodings of
 * golang.org/x/mod/sumdb/note that signed-note's "Verifier keys" section adopts.
 *
 * Ed25519 runs on WebCrypto, so opening and signing are asynchronous. Nothing here reads a clock
 * or draws randomness: seeds and, for cosigners, the clock come from the caller.
 */
import { concatBytes, fromBase64, toBase64, toHex, utf8 } from '../../crypto/bytes.js';
import { sha256 } from '../../crypto/sha256.js';
import * as ed25519 from './ed25519.js';
import { TlogError, malformed } from './errors.js';

/** signed-note "Signature types": Ed25519 over the note text. */
export const SIGNATURE_TYPE_ED25519 = 0x01;
/** signed-note "Signature types" and tlog-cosignature: timestamped Ed25519 witness cosignature. */
export const SIGNATURE_TYPE_COSIGNATURE_V1 = 0x04;

/**
 * The most signature lines a note may carry. signed-note "Format" asks verifiers for a limit of
 * at least 16; 100 is golang.org/x/mod/sumdb/note's, and a note with more is malformed.
 */
export const MAX_NOTE_SIGNATURES = 100;

/** signed-note "Format": em dash (U+2014), space. */
const SIGNATURE_PREFIX = '\u2014 ';
const SIGNER_KEY_PREFIX = 'PRIVATE+KEY+';
/** tlog-cosignature "Ed25519 signed message": the header line. */
const COSIGNATURE_HEADER = 'cosignature/v1';
/** tlog-cosignature: u64 timestamp || 64-byte Ed25519 signature. */
const COSIGNATURE_SIZE = 8 + ed25519.ED25519_SIGNATURE_SIZE;
/** tlog-cosignature "Format": the timestamp MUST NOT exceed 2^63 - 1. */
const MAX_COSIGNATURE_TIMESTAMP = (1n << 63n) - 1n;

/** One signature line of a note. */
export interface NoteSignature {
  readonly name: string;
  /** The uint32 key ID, the first four signature bytes read big-endian. */
  readonly keyId: number;
  /** The signature bytes after the key ID. */
  readonly signature: Uint8Array;
}

/** A parsed, not yet verified, note. Its text MUST be ignored until `open` verifies it. */
export interface Note {
  /** The note text, including its final newline but not the separating empty line. */
  readonly text: string;
  readonly signatures: readonly NoteSignature[];
}

/** A signature that `open` verified with a known key. */
export interface VerifiedSignature extends NoteSignature {
  readonly type: number;
  /** For cosignatures (type 0x04): the POSIX time the cosigner signed at, in seconds. */
  readonly timestamp?: number;
}

export interface OpenedNote {
  readonly text: string;
  /** One entry per known key that signed (a cosigner that signed twice: its newest signature). */
  readonly verified: readonly VerifiedSignature[];
  /** Signatures by keys the caller did not know, repeated lines dropped. */
  readonly unverified: readonly NoteSignature[];
}

/** Verifies signatures by one key, identified by its name and key ID. */
export interface NoteVerifier {
  readonly name: string;
  readonly keyId: number;
  readonly type: number;
  /** Whether `signature` (the bytes after the key ID) is a valid signature of `text`. */
  verify(text: Uint8Array, signature: Uint8Array): Promise<boolean>;
}

/** Signs notes with one key. */
export interface NoteSigner {
  readonly name: string;
  readonly keyId: number;
  readonly type: number;
  /** The signature bytes (without the key ID) over the note text `text`. */
  sign(text: Uint8Array): Promise<Uint8Array>;
}

/** A verifier parsed from, or made for, a verifier key of a type implemented here. */
export interface VerifierKey extends NoteVerifier {
  readonly publicKey: Uint8Array;
  /** The verifier key in text form, `<name>+<hex key ID>+base64(type || public key)`. */
  readonly verifierKey: string;
}

/** A signer parsed from a signer key. */
export interface SignerKey extends NoteSigner {
  /** The matching public half. */
  readonly verifier: VerifierKey;
}

// --- text rules ---

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
// eslint-disable-next-line no-control-regex
const CONTROL_EXCEPT_NEWLINE = /[\u0000-\u0009\u000B-\u001F]/;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001F]/;
const UNICODE_SPACE = /\p{White_Space}/u;

/** Decodes UTF-8 strictly, keeping a leading byte order mark (it is part of the signed text). */
function decodeNoteBytes(b: Uint8Array): string {
  try {
    return strictUtf8.decode(b);
  } catch {
    throw malformed('note is not valid UTF-8');
  }
}

/**
 * signed-note "Format": a note MUST be valid UTF-8 (a JavaScript string: no lone surrogate) and
 * MUST NOT contain ASCII control characters other than newline.
 */
function checkNoteCharacters(s: string, what: string): void {
  if (LONE_SURROGATE.test(s)) throw malformed(`${what} is not valid Unicode`);
  if (CONTROL_EXCEPT_NEWLINE.test(s)) throw malformed(`${what} contains a control character`);
}

/** signed-note "Format": the text ends in a newline; the characters rules apply to it. */
function checkNoteText(text: string): void {
  if (!text.endsWith('\n')) throw malformed('note text must end with a newline');
  checkNoteCharacters(text, 'note text');
}

/**
 * signed-note "Format": key names are non-empty and contain no Unicode space and no plus sign.
 * Control characters are refused too: a note cannot contain them, so such a name is an error.
 */
export function isValidKeyName(name: string): boolean {
  return (
    name.length > 0 &&
    !name.includes('+') &&
    !UNICODE_SPACE.test(name) &&
    !CONTROL.test(name) &&
    !LONE_SURROGATE.test(name)
  );
}

// --- key IDs and key encodings ---

/**
 * signed-note "Signatures" (and tlog-cosignature "Format" for type 0x04):
 * key ID = SHA-256(key name || 0x0A || signature type || public key)[:4], read big-endian.
 */
export function computeKeyId(name: string, type: number, publicKey: Uint8Array): number {
  const h = sha256(utf8(name), Uint8Array.of(0x0a, type), publicKey);
  return ((h[0]! << 24) | (h[1]! << 16) | (h[2]! << 8) | h[3]!) >>> 0;
}

/** The key ID as eight lowercase hex digits, as in verifier keys. */
export function formatKeyId(keyId: number): string {
  return keyId.toString(16).padStart(8, '0');
}

function keyIdBytes(keyId: number): Uint8Array {
  return Uint8Array.of(keyId >>> 24, (keyId >>> 16) & 0xff, (keyId >>> 8) & 0xff, keyId & 0xff);
}

function parseKeyId(hex: string): number {
  if (!/^[0-9a-fA-F]{8}$/.test(hex)) throw malformed('key ID must be 8 hex digits');
  return parseInt(hex, 16) >>> 0;
}

function isImplementedType(type: number): boolean {
  return type === SIGNATURE_TYPE_ED25519 || type === SIGNATURE_TYPE_COSIGNATURE_V1;
}

/** `name+hexid+base64(...)`: splits at the first two plus signs (base64 may contain more). */
function splitKey(s: string): [string, string, string] {
  const i = s.indexOf('+');
  const j = i < 0 ? -1 : s.indexOf('+', i + 1);
  if (j < 0) throw malformed('key must be <name>+<key ID>+<key>');
  return [s.slice(0, i), s.slice(i + 1, j), s.slice(j + 1)];
}

function decodeKeyMaterial(b64: string): { type: number; material: Uint8Array } {
  let raw: Uint8Array;
  try {
    raw = fromBase64(b64);
  } catch {
    throw malformed('key material is not base64');
  }
  if (raw.length < 1) throw malformed('key material is empty');
  return { type: raw[0]!, material: raw.subarray(1) };
}

function cosignatureMessage(text: Uint8Array, timestamp: bigint): Uint8Array {
  return concatBytes(utf8(`${COSIGNATURE_HEADER}\ntime ${timestamp.toString()}\n`), text);
}

/**
 * tlog-cosignature "Ed25519 signed message": what a `cosignature/v1` cosigner signs, the header
 * line, the `time` line and the checkpoint body (the note text, with its final newline).
 */
export function cosignedMessage(checkpointText: string, timestamp: number): Uint8Array {
  if (!Number.isSafeInteger(timestamp) || timestamp < 0) throw new RangeError('timestamp out of range');
  return cosignatureMessage(utf8(checkpointText), BigInt(timestamp));
}

/** tlog-cosignature: the u64 timestamp of a type 0x04 signature, or undefined if it has none. */
export function cosignatureTimestamp(signature: Uint8Array): number | undefined {
  if (signature.length !== COSIGNATURE_SIZE) return undefined;
  const t = new DataView(signature.buffer, signature.byteOffset, 8).getBigUint64(0);
  return t <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(t) : undefined;
}

class Ed25519VerifierKey implements VerifierKey {
  readonly keyId: number;
  readonly verifierKey: string;
  private cryptoKey: Promise<CryptoKey> | undefined;

  constructor(
    readonly name: string,
    readonly type: number,
    readonly publicKey: Uint8Array,
  ) {
    this.keyId = computeKeyId(name, type, publicKey);
    this.verifierKey = `${name}+${formatKeyId(this.keyId)}+${toBase64(concatBytes(Uint8Array.of(type), publicKey))}`;
  }

  async verify(text: Uint8Array, signature: Uint8Array): Promise<boolean> {
    let message = text;
    let sig = signature;
    if (this.type === SIGNATURE_TYPE_COSIGNATURE_V1) {
      if (signature.length !== COSIGNATURE_SIZE) return false;
      const timestamp = new DataView(signature.buffer, signature.byteOffset, 8).getBigUint64(0);
      // 2^63 - 1 is the spec's bound; past 2^53 seconds the time cannot be returned exactly.
      if (timestamp > MAX_COSIGNATURE_TIMESTAMP || timestamp > BigInt(Number.MAX_SAFE_INTEGER)) return false;
      message = cosignatureMessage(text, timestamp);
      sig = signature.subarray(8);
    }
    let key: CryptoKey;
    try {
      this.cryptoKey ??= ed25519.importPublicKey(this.publicKey);
      key = await this.cryptoKey;
    } catch {
      return false; // a public key that WebCrypto refuses verifies nothing
    }
    return ed25519.verify(key, sig, message);
  }
}

/**
 * Parses a verifier key, `<name>+<hex key ID>+base64(type || public key)` (signed-note "Verifier
 * keys"), for type 0x01 (Ed25519) or 0x04 (tlog-cosignature "Format": a cosigner's vkey), both
 * with a 32-byte Ed25519 public key. Throws `Malformed`, or `TlogError` `UnsupportedKeyType` or
 * `KeyIdMismatch`.
 */
export function parseVerifierKey(vkey: string): VerifierKey {
  const [name, hex, b64] = splitKey(vkey);
  if (!isValidKeyName(name)) throw malformed('invalid key name');
  const keyId = parseKeyId(hex);
  const { type, material } = decodeKeyMaterial(b64);
  if (!isImplementedType(type)) throw new TlogError('UnsupportedKeyType', `unsupported signature type 0x${type.toString(16)}`);
  if (material.length !== ed25519.ED25519_PUBLIC_KEY_SIZE) throw malformed('Ed25519 public key must be 32 bytes');
  const v = new Ed25519VerifierKey(name, type, material.slice());
  if (v.keyId !== keyId) throw new TlogError('KeyIdMismatch', 'key ID does not match the key');
  return v;
}

/** A verifier for a 32-byte Ed25519 public key under `name`, as type 0x01 or 0x04. */
export function verifierFromPublicKey(name: string, publicKey: Uint8Array, type = SIGNATURE_TYPE_ED25519): VerifierKey {
  if (!isValidKeyName(name)) throw malformed('invalid key name');
  if (!isImplementedType(type)) throw new TlogError('UnsupportedKeyType', `unsupported signature type 0x${type.toString(16)}`);
  if (publicKey.length !== ed25519.ED25519_PUBLIC_KEY_SIZE) throw malformed('Ed25519 public key must be 32 bytes');
  return new Ed25519VerifierKey(name, type, publicKey.slice());
}

export interface SignerOptions {
  /** The POSIX time in seconds; required for cosigners (type 0x04), which sign a timestamp. */
  readonly clock?: () => number;
}

async function makeSigner(name: string, type: number, seed: Uint8Array, options: SignerOptions): Promise<SignerKey> {
  const { privateKey, publicKey } = await ed25519.importSeed(seed);
  const verifier = new Ed25519VerifierKey(name, type, publicKey);
  const clock = options.clock;
  if (type === SIGNATURE_TYPE_COSIGNATURE_V1 && clock === undefined) {
    throw new TypeError('a cosigner (type 0x04) needs a clock');
  }
  return {
    name,
    type,
    keyId: verifier.keyId,
    verifier,
    async sign(text: Uint8Array): Promise<Uint8Array> {
      if (type !== SIGNATURE_TYPE_COSIGNATURE_V1 || clock === undefined) return ed25519.sign(privateKey, text);
      const now = clock();
      if (!Number.isSafeInteger(now) || now < 0) throw new RangeError('clock must return whole seconds');
      const timestamp = new Uint8Array(8);
      new DataView(timestamp.buffer).setBigUint64(0, BigInt(now));
      const sig = await ed25519.sign(privateKey, cosignatureMessage(text, BigInt(now)));
      return concatBytes(timestamp, sig);
    },
  };
}

/**
 * Parses a signer key, `PRIVATE+KEY+<name>+<hex key ID>+base64(type || 32-byte Ed25519 seed)`,
 * and checks its key ID against the derived public key. Throws `Malformed`, or `TlogError`
 * `UnsupportedKeyType` or `KeyIdMismatch`.
 */
export async function parseSignerKey(skey: string, options: SignerOptions = {}): Promise<SignerKey> {
  if (!skey.startsWith(SIGNER_KEY_PREFIX)) throw malformed('signer key must start with PRIVATE+KEY+');
  const [name, hex, b64] = splitKey(skey.slice(SIGNER_KEY_PREFIX.length));
  if (!isValidKeyName(name)) throw malformed('invalid key name');
  const keyId = parseKeyId(hex);
  const { type, material } = decodeKeyMaterial(b64);
  if (!isImplementedType(type)) throw new TlogError('UnsupportedKeyType', `unsupported signature type 0x${type.toString(16)}`);
  if (material.length !== ed25519.ED25519_SEED_SIZE) throw malformed('Ed25519 seed must be 32 bytes');
  const signer = await makeSigner(name, type, material, options);
  if (signer.keyId !== keyId) throw new TlogError('KeyIdMismatch', 'key ID does not match the key');
  return signer;
}

/**
 * A new key pair from a 32-byte seed the caller drew from its RNG, as a signer key and the
 * matching verifier key.
 */
export async function newSignerKey(
  name: string,
  seed: Uint8Array,
  type = SIGNATURE_TYPE_ED25519,
): Promise<{ signerKey: string; verifierKey: string }> {
  if (!isValidKeyName(name)) throw malformed('invalid key name');
  if (!isImplementedType(type)) throw new TlogError('UnsupportedKeyType', `unsupported signature type 0x${type.toString(16)}`);
  if (seed.length !== ed25519.ED25519_SEED_SIZE) throw new RangeError('Ed25519 seed must be 32 bytes');
  const { publicKey } = await ed25519.importSeed(seed);
  const verifier = new Ed25519VerifierKey(name, type, publicKey);
  const signerKey = `${SIGNER_KEY_PREFIX}${name}+${formatKeyId(verifier.keyId)}+${toBase64(concatBytes(Uint8Array.of(type), seed))}`;
  return { signerKey, verifierKey: verifier.verifierKey };
}

// --- the note format ---

/** signed-note "Signatures": `— <key name> base64(key ID || signature)`, without the newline. */
export function formatSignatureLine(sig: NoteSignature): string {
  if (!isValidKeyName(sig.name)) throw malformed('invalid key name');
  if (!Number.isInteger(sig.keyId) || sig.keyId < 0 || sig.keyId > 0xffffffff) throw malformed('key ID out of range');
  if (sig.signature.length < 1) throw malformed('empty signature');
  return `${SIGNATURE_PREFIX}${sig.name} ${toBase64(concatBytes(keyIdBytes(sig.keyId), sig.signature))}`;
}

/** Writes a note: the text, an empty line, one line per signature (at least one, at most 100). */
export function formatNote(note: Note): string {
  checkNoteText(note.text);
  if (note.signatures.length < 1) throw malformed('a note needs at least one signature');
  if (note.signatures.length > MAX_NOTE_SIGNATURES) throw malformed('too many signatures');
  return `${note.text}\n${note.signatures.map((s) => formatSignatureLine(s) + '\n').join('')}`;
}

function parseSignatureLine(line: string): NoteSignature {
  if (!line.startsWith(SIGNATURE_PREFIX)) throw malformed('signature line must start with an em dash and a space');
  const rest = line.slice(SIGNATURE_PREFIX.length);
  const space = rest.indexOf(' ');
  if (space < 0) throw malformed('signature line without a signature');
  const name = rest.slice(0, space);
  if (!isValidKeyName(name)) throw malformed('invalid key name in signature line');
  let raw: Uint8Array;
  try {
    raw = fromBase64(rest.slice(space + 1));
  } catch {
    throw malformed('signature is not base64');
  }
  // Four bytes of key ID and a signature of at least one byte.
  if (raw.length < 5) throw malformed('signature too short');
  const keyId = ((raw[0]! << 24) | (raw[1]! << 16) | (raw[2]! << 8) | raw[3]!) >>> 0;
  return { name, keyId, signature: raw.slice(4) };
}

/**
 * Parses a note without verifying it (signed-note "Format"). The text and the signatures are
 * split at the last empty line; a note must be valid UTF-8 without control characters other
 * than newline, and have 1 to 100 signature lines, each newline-terminated. Throws `Malformed`.
 */
export function parseNote(input: string | Uint8Array): Note {
  const note = typeof input === 'string' ? input : decodeNoteBytes(input);
  checkNoteCharacters(note, 'note');
  const split = note.lastIndexOf('\n\n');
  if (split < 0) throw malformed('note has no signature block');
  const text = note.slice(0, split + 1);
  const block = note.slice(split + 2);
  if (block.length === 0) throw malformed('note has no signatures');
  if (!block.endsWith('\n')) throw malformed('note must end with a newline');
  const lines = block.slice(0, -1).split('\n');
  if (lines.length > MAX_NOTE_SIGNATURES) throw malformed('too many signatures');
  return { text, signatures: lines.map(parseSignatureLine) };
}

// --- signing and opening ---

/**
 * Signs `text` with every signer and writes the note. Signatures already on the note
 * (`existing`, e.g. the log's, when a cosignature is added) come first, except those from one of
 * `signers`, which are replaced.
 */
export async function sign(
  text: string,
  signers: readonly NoteSigner[],
  existing: readonly NoteSignature[] = [],
): Promise<string> {
  checkNoteText(text);
  const bytes = utf8(text);
  const fresh: NoteSignature[] = [];
  for (const s of signers) {
    if (!isValidKeyName(s.name)) throw malformed('invalid signer name');
    fresh.push({ name: s.name, keyId: s.keyId, signature: await s.sign(bytes) });
  }
  const kept = existing.filter((e) => !signers.some((s) => s.name === e.name && s.keyId === e.keyId));
  return formatNote({ text, signatures: [...kept, ...fresh] });
}

function keyOf(name: string, keyId: number): string {
  return `${formatKeyId(keyId)}+${name}`;
}

/**
 * Parses and verifies a note against the caller's known keys (signed-note "Signatures"):
 * signatures from unknown keys (name and key ID not both matching a known key) are ignored;
 * every signature from a known key is verified, and one that fails rejects the whole note
 * (`BadSignature`); a note with no verified signature is rejected (`NoVerifiedSignature`).
 * Throws `Malformed` for a malformed note, `AmbiguousKey` if two verifiers share name and key ID.
 */
export async function open(input: string | Uint8Array | Note, verifiers: readonly NoteVerifier[]): Promise<OpenedNote> {
  const note = typeof input === 'string' || input instanceof Uint8Array ? parseNote(input) : input;
  if (note.signatures.length > MAX_NOTE_SIGNATURES) throw malformed('too many signatures');
  checkNoteText(note.text);

  const known = new Map<string, NoteVerifier>();
  for (const v of verifiers) {
    const k = keyOf(v.name, v.keyId);
    const prior = known.get(k);
    if (prior !== undefined && prior !== v) throw new TlogError('AmbiguousKey', `two verifiers for ${v.name}+${formatKeyId(v.keyId)}`);
    known.set(k, v);
  }

  const text = utf8(note.text);
  const verified = new Map<string, VerifiedSignature>();
  const unverified = new Map<string, NoteSignature>();
  const checked = new Set<string>();
  for (const sig of note.signatures) {
    const k = keyOf(sig.name, sig.keyId);
    const line = `${k} ${toHex(sig.signature)}`;
    const v = known.get(k);
    if (v === undefined) {
      if (!unverified.has(line)) unverified.set(line, sig);
      continue;
    }
    if (checked.has(line)) continue; // the same line again: verified already
    if (!(await v.verify(text, sig.signature))) {
      throw new TlogError('BadSignature', `invalid signature by ${sig.name}+${formatKeyId(sig.keyId)}`);
    }
    checked.add(line);
    const timestamp = v.type === SIGNATURE_TYPE_COSIGNATURE_V1 ? cosignatureTimestamp(sig.signature) : undefined;
    const entry: VerifiedSignature =
      timestamp === undefined ? { ...sig, type: v.type } : { ...sig, type: v.type, timestamp };
    const prior = verified.get(k);
    if (prior === undefined || (prior.timestamp ?? -1) < (timestamp ?? -1)) verified.set(k, entry);
  }
  if (verified.size === 0) throw new TlogError('NoVerifiedSignature', 'note has no signature by a known key');
  return { text: note.text, verified: [...verified.values()], unverified: [...unverified.values()] };
}

