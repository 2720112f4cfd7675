/**
 * Checkpoints (c2sp.org/tlog-checkpoint): the signed tree head of a log, a signed note whose
 * text is
 *
 *     <origin>
 *     <tree size, decimal>
 *     <root hash, base64>
 *     [extension lines]
 *
 * The log signs it with an Ed25519 note signature; witnesses add `cosignature/v1` cosignatures
 * (c2sp.org/tlog-cosignature) over the same text.
 */
import { fromBase64, toBase64 } from '../../crypto/bytes.js';
import { TlogError, malformed } from './errors.js';
import { HASH_SIZE } from './merkle.js';
import { open, sign } from './note.js';
import type { Note, NoteSigner, NoteVerifier, OpenedNote, VerifiedSignature } from './note.js';

export interface Checkpoint {
  /** The log's identity (tlog-checkpoint "Note text", line 1). */
  readonly origin: string;
  /** The number of leaves (line 2). A safe integer here, although the format allows 64 bits. */
  readonly treeSize: number;
  /** The RFC 6962 root hash at that size, 32 bytes (line 3). */
  readonly rootHash: Uint8Array;
  /** Extension lines (line 4 on), opaque, each non-empty; usually none. */
  readonly extensions: readonly string[];
}

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001F]/;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
/** tlog-checkpoint "Note text", line 2: ASCII decimal, no leading zeroes (except `0` itself). */
const DECIMAL = /^(0|[1-9][0-9]*)$/;

/** A checkpoint line: non-empty, and what signed-note allows in a note (no control characters). */
function checkLine(line: string, what: string): void {
  if (line.length === 0) throw malformed(`checkpoint ${what} is empty`);
  if (CONTROL.test(line) || LONE_SURROGATE.test(line)) throw malformed(`checkpoint ${what} has a forbidden character`);
}

/**
 * Parses a checkpoint from the note text (tlog-checkpoint "Note text"): at least three non-empty
 * newline-terminated lines. The tree size must be below 2^53. Throws `Malformed`.
 *
 * Only call this on text that `open` has verified (or that you are about to sign): signed-note
 * says unverified text MUST be ignored. `openCheckpoint` does both in the right order.
 */
export function parseCheckpoint(text: string): Checkpoint {
  if (!text.endsWith('\n')) throw malformed('checkpoint must end with a newline');
  const lines = text.slice(0, -1).split('\n');
  if (lines.length < 3) throw malformed('checkpoint needs origin, tree size and root hash');
  const [origin, size, root, ...extensions] = lines as [string, string, string, ...string[]];
  checkLine(origin, 'origin');
  if (!DECIMAL.test(size)) throw malformed('checkpoint tree size is not a canonical decimal');
  const treeSize = Number(size);
  if (!Number.isSafeInteger(treeSize)) throw malformed('checkpoint tree size is too large');
  let rootHash: Uint8Array;
  try {
    rootHash = fromBase64(root);
  } catch {
    throw malformed('checkpoint root hash is not base64');
  }
  if (rootHash.length !== HASH_SIZE) throw malformed(`checkpoint root hash is not ${HASH_SIZE} bytes`);
  extensions.forEach((e) => checkLine(e, 'extension line'));
  return { origin, treeSize, rootHash, extensions };
}

/** Writes the note text of a checkpoint. Throws `Malformed` for values the format cannot hold. */
export function formatCheckpoint(c: Checkpoint): string {
  checkLine(c.origin, 'origin');
  if (c.origin.includes('\n')) throw malformed('checkpoint origin has a newline');
  if (!Number.isSafeInteger(c.treeSize) || c.treeSize < 0) throw malformed('checkpoint tree size out of range');
  if (c.rootHash.length !== HASH_SIZE) throw malformed(`checkpoint root hash is not ${HASH_SIZE} bytes`);
  for (const e of c.extensions) {
    checkLine(e, 'extension line');
    if (e.includes('\n')) throw malformed('checkpoint extension line has a newline');
  }
  return [c.origin, String(c.treeSize), toBase64(c.rootHash), ...c.extensions].map((l) => l + '\n').join('');
}

/** Signs a checkpoint: the signed note of its text (the log's key first, then any others). */
export function signCheckpoint(c: Checkpoint, signers: readonly NoteSigner[]): Promise<string> {
  return sign(formatCheckpoint(c), signers);
}

/** Who must and who may sign a checkpoint. */
export interface CheckpointPolicy {
  /** The expected origin line. tlog-checkpoint: the log's key name SHOULD match it. */
  readonly origin: string;
  /** The log's key(s): at least one of them must have signed. */
  readonly log: NoteVerifier | readonly NoteVerifier[];
  /** Witness cosigner keys; their signatures are verified and returned, never required here. */
  readonly witnesses?: readonly NoteVerifier[];
}

export interface OpenedCheckpoint {
  readonly checkpoint: Checkpoint;
  /** The verified signatures by the log's key(s). */
  readonly logSignatures: readonly VerifiedSignature[];
  /** The verified witness cosignatures (with their timestamps); quorum and freshness are the caller's. */
  readonly cosignatures: readonly VerifiedSignature[];
  readonly note: OpenedNote;
}

function isVerifierList(v: NoteVerifier | readonly NoteVerifier[]): v is readonly NoteVerifier[] {
  return Array.isArray(v);
}

/**
 * Verifies a signed checkpoint and parses it: the note must verify (signed-note rules, with the
 * log and witness keys as the known keys), the log must have signed it (`MissingSignature`), and
 * the origin must be the expected one (`OriginMismatch`).
 */
export async function openCheckpoint(
  input: string | Uint8Array | Note,
  policy: CheckpointPolicy,
): Promise<OpenedCheckpoint> {
  const logKeys: readonly NoteVerifier[] = isVerifierList(policy.log) ? policy.log : [policy.log];
  const witnesses = policy.witnesses ?? [];
  const note = await open(input, [...logKeys, ...witnesses]);
  const isLog = (s: VerifiedSignature): boolean => logKeys.some((k) => k.name === s.name && k.keyId === s.keyId);
  const logSignatures = note.verified.filter(isLog);
  if (logSignatures.length === 0) throw new TlogError('MissingSignature', 'checkpoint is not signed by the log');
  // Only now is the text trusted enough to read.
  const checkpoint = parseCheckpoint(note.text);
  if (checkpoint.origin !== policy.origin) throw new TlogError('OriginMismatch', 'checkpoint is from another log');
  const cosignatures = note.verified.filter((s) => !isLog(s));
  return { checkpoint, logSignatures, cosignatures, note };
}
