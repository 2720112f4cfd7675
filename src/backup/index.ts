/**
 * Encrypted backup archives (DESIGN section 8): the public entry point of src/backup.
 *
 * An archive is a POSIX tar stream of the user's files, encrypted as a standard
 * age-encryption.org/v1 file to the X25519 recipient derived from the backup key K, so any age
 * implementation can open it with the identity `deriveAgeKeyPair(K).identity`.
 */
export { BackupError, isBackupError, BACKUP_ERROR_CODES, type BackupErrorCode } from './errors.js';
export { deriveAgeKeyPair, identityToRecipient, parseIdentity, parseRecipient, type AgeKeyPair } from './age-key.js';
export { encryptAge, decryptAge, type EncryptOptions } from './age-stream.js';
export { writeTar, readTar, type TarWriteEntry, type TarReadEntry, type TarEntryHeader, type TarEntryType } from './tar.js';
export {
  createArchive,
  listArchives,
  readSummary,
  deleteArchive,
  restoreArchive,
  verifyArchive,
  readManifest,
  type CreateOptions,
  type CreateResult,
  type RestoreOptions,
  type RestoreResult,
  type VerifyOptions,
} from './archive.js';
export type { ArchiveSummary, Manifest, ManifestEntry, KeyMode } from './manifest.js';
export type { Progress, ProgressCallback } from './progress.js';
export type { SkippedPath } from './sources.js';
export { DirectoryStore, type BackupStore, type StagedObject, type StoredObject } from './store.js';
export { S3Store, parseS3Url, type S3StoreOptions } from './s3-store.js';
export { newRecoveryCode, parseRecoveryCode, formatRecoveryCode, type RecoveryCode } from './recovery-code.js';
