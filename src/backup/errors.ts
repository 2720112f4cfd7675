/**
 * Typed errors for the backup library. Codes are stable: the CLI maps each one to an exit code in
 * one place. Messages never carry key material or file contents.
 */
export const BACKUP_ERROR_CODES = [
  /** The input is not an age-encryption.org/v1 file (or is armored, which archives never are). */
  'UnknownFormat',
  /** The age header, tar stream, manifest or key string breaks its format's rules. */
  'Malformed',
  /** No stanza in the header opens with the given identity (wrong key, or an altered stanza). */
  'WrongKey',
  /** Authentication failed: header MAC, a payload chunk, or data after the final chunk. */
  'Tampered',
  /** The input ends before its format says it may (provably cut short, not altered). */
  'Truncated',
  /** A restored file's SHA-256 or size differs from the manifest, or the archive from its manifest. */
  'HashMismatch',
  /** A tar entry names a path outside the destination (absolute, `..`, or through a symlink). */
  'UnsafePath',
  /** A tar entry of a type the archive format does not carry (symlink, device, hard link...). */
  'UnsupportedEntry',
  /** Restore would replace an existing file and `overwrite` was not given. */
  'Exists',
  /** The named archive or store object does not exist. */
  'NotFound',
  /** A source file changed size while it was being archived. */
  'FileChanged',
  /** A recovery code was mistyped: wrong length, a non-digit, or the check failed. */
  'BadRecoveryCode',
  /** An argument is out of range (a key of the wrong length, an invalid archive id, ...). */
  'BadArgument',
  /** The operation was cancelled through its AbortSignal. */
  'Aborted',
  /** The store could not be reached or refused the operation (network, credentials, no bucket). */
  'StoreFailed',
] as const;

export type BackupErrorCode = (typeof BACKUP_ERROR_CODES)[number];

export class BackupError extends Error {
  constructor(
    readonly code: BackupErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'BackupError';
  }
}

export function isBackupError(e: unknown, code?: BackupErrorCode): e is BackupError {
  return e instanceof BackupError && (code === undefined || e.code === code);
}
