/**
 * Errors of the transparency-log formats.
 *
 * Parse errors (bytes or text that do not follow a format) are `ProtocolError('Malformed')`, like
 * everywhere else in protocol/. A `TlogError` means the input was well formed but a check failed:
 * a signature, a proof, a key, or the identity of the log. Each code names the check, so that
 * the CLI and the HTTP layer can map it in one place (all of them are trust failures).
 */
import { ProtocolError } from '../errors.js';

export type TlogErrorCode =
  /** A signature by a known key (name and key ID match) does not verify (signed-note, "Signatures"). */
  | 'BadSignature'
  /** No signature by a known key: the note must be rejected (signed-note, "Signatures"). */
  | 'NoVerifiedSignature'
  /** A key the caller requires (such as the log's own key on a checkpoint) did not sign. */
  | 'MissingSignature'
  /** A verifier or signer key of a signature type this code does not implement. */
  | 'UnsupportedKeyType'
  /** The key ID written in a verifier or signer key is not the one derived from the key. */
  | 'KeyIdMismatch'
  /** Two configured verifiers share both name and key ID, so a signature cannot be attributed. */
  | 'AmbiguousKey'
  /** A Merkle proof is not a proof for the given index or sizes (RFC 9162 sections 2.1.3.2 and 2.1.4.2). */
  | 'InvalidProof'
  /** A Merkle proof is well formed, but the hashes it leads to are not the expected root(s). */
  | 'RootMismatch'
  /** A checkpoint is from another log than the one expected (tlog-checkpoint, origin line). */
  | 'OriginMismatch';

export class TlogError extends Error {
  constructor(
    readonly code: TlogErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'TlogError';
  }
}

/** The parse error of this folder. */
export function malformed(message: string): ProtocolError {
  return new ProtocolError('Malformed', message);
}
