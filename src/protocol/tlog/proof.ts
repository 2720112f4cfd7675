/**
 * Transparency log proofs (c2sp.org/tlog-proof): an offline-verifiable proof that an entry is in
 * a log, as text. The layout (tlog-proof "Format"):
 *
 *     c2sp.org/tlog-proof@v1
 *     extra <base64>              optional, opaque and NOT authenticated
 *     index <decimal>             the entry's zero-based index, no leading zeroes
 *     <base64 hash>               zero or more lines: the RFC 6962 inclusion proof, from the
 *     ...                         leaf's sibling up to the child of the root
 *     <empty line>
 *     <checkpoint>                the signed checkpoint note, verbatim, with any cosignatures
 *
 * Lines end with a newline (U+000A). Parsing is strict: the checkpoint part must be a well-formed
 * signed note whose text is a well-formed checkpoint, but nothing is verified until
 * `verifyTlogProof`.
 */
import { fromBase64, toBase64 } from '../../crypto/bytes.js';
import { parseCheckpoint, openCheckpoint } from './checkpoint.js';
import type { CheckpointPolicy, OpenedCheckpoint } from './checkpoint.js';
import { TlogError, malformed } from './errors.js';
import { HASH_SIZE, verifyInclusion } from './merkle.js';
import { parseNote } from './note.js';

/** tlog-proof "Format": the first line. */
export const TLOG_PROOF_HEADER = 'c2sp.org/tlog-proof@v1';

export interface TlogProof {
  /** Application data that is not authenticated (tlog-proof "Format": MUST NOT be trusted implicitly). */
  readonly extra?: Uint8Array;
  readonly index: number;
  /** The inclusion proof, 32-byte hashes. */
  readonly proof: readonly Uint8Array[];
  /** The checkpoint as a signed note, verbatim. */
  readonly checkpoint: string;
}

const DECIMAL = /^(0|[1-9][0-9]*)$/;
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function checkCheckpointNote(note: string): void {
  parseCheckpoint(parseNote(note).text);
}

/** Writes a proof in the layout above. Throws `Malformed` for values the format cannot hold. */
export function formatTlogProof(p: TlogProof): string {
  if (!Number.isSafeInteger(p.index) || p.index < 0) throw malformed('proof index out of range');
  for (const h of p.proof) if (h.length !== HASH_SIZE) throw malformed(`proof hash is not ${HASH_SIZE} bytes`);
  checkCheckpointNote(p.checkpoint);
  const lines = [TLOG_PROOF_HEADER];
  if (p.extra !== undefined) lines.push(`extra ${toBase64(p.extra)}`);
  lines.push(`index ${p.index}`);
  for (const h of p.proof) lines.push(toBase64(h));
  return lines.map((l) => l + '\n').join('') + '\n' + p.checkpoint;
}

/** Parses a proof in the layout above. Throws `Malformed`. */
export function parseTlogProof(input: string | Uint8Array): TlogProof {
  let text: string;
  if (typeof input === 'string') {
    text = input;
  } else {
    try {
      text = strictUtf8.decode(input);
    } catch {
      throw malformed('proof is not valid UTF-8');
    }
  }
  // None of the lines before the checkpoint is empty, so the first empty line ends them.
  const split = text.indexOf('\n\n');
  if (split < 0) throw malformed('proof has no checkpoint');
  const lines = text.slice(0, split).split('\n');
  const checkpoint = text.slice(split + 2);
  let i = 0;
  if (lines[i++] !== TLOG_PROOF_HEADER) throw malformed('not a c2sp.org/tlog-proof@v1 proof');
  let extra: Uint8Array | undefined;
  if (lines[i]?.startsWith('extra ')) {
    try {
      extra = fromBase64(lines[i]!.slice('extra '.length));
    } catch {
      throw malformed('proof extra data is not base64');
    }
    i++;
  }
  const indexLine = lines[i++];
  if (indexLine === undefined || !indexLine.startsWith('index ')) throw malformed('proof has no index line');
  const indexText = indexLine.slice('index '.length);
  if (!DECIMAL.test(indexText)) throw malformed('proof index is not a canonical decimal');
  const index = Number(indexText);
  if (!Number.isSafeInteger(index)) throw malformed('proof index is too large');
  const proof: Uint8Array[] = [];
  for (; i < lines.length; i++) {
    let h: Uint8Array;
    try {
      h = fromBase64(lines[i]!);
    } catch {
      throw malformed('proof hash is not base64');
    }
    if (h.length !== HASH_SIZE) throw malformed(`proof hash is not ${HASH_SIZE} bytes`);
    proof.push(h);
  }
  checkCheckpointNote(checkpoint);
  return extra === undefined ? { index, proof, checkpoint } : { extra, index, proof, checkpoint };
}

/**
 * Verifies a proof for the entry whose leaf hash is `leafHash` (SHA-256(0x00 || entry)): the
 * checkpoint under `policy` (see `openCheckpoint`), then the inclusion of the leaf at `index`
 * against its root. Returns the opened checkpoint, whose cosignatures the caller still has to
 * hold against its witness quorum and freshness rules.
 */
export async function verifyTlogProof(
  p: TlogProof,
  leafHash: Uint8Array,
  policy: CheckpointPolicy,
): Promise<OpenedCheckpoint> {
  const opened = await openCheckpoint(p.checkpoint, policy);
  const { treeSize, rootHash } = opened.checkpoint;
  if (p.index >= treeSize) throw new TlogError('InvalidProof', 'entry index is not in the checkpoint tree');
  verifyInclusion(p.index, treeSize, leafHash, p.proof, rootHash);
  return opened;
}
