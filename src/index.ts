/**
 * The public API of the Backup Key Vault SDK. Everything else is internal.
 *
 * ```ts
 * const vault = new Vault({ fleet: parseTrustFile(json), transport: httpTransport({ server }) });
 * const { key } = await vault.register('alice', password);
 * ```
 */
export { Vault, VaultError, BACKUP_KEY_BYTES, type VaultOptions, type RecoverResult, type StatusResult } from './client/vault.js';
export { httpTransport, type Transport, type TransportReply, type HttpTransportOptions } from './client/transport.js';
export { parseTrustFile, makeTrustFile, fleetIdOf, type TrustFile, type PinnedFleet, type FleetPublicKeys } from './protocol/fleet.js';
export { ERROR_CODES, type ErrorCode } from './protocol/errors.js';
export type { KeyStretching } from './crypto/opaque.js';
/**
 * Bundle mode (DESIGN section 6): pin the validator, witnesses and operator instead of the fleet;
 * `fetchBundle`, then `vaultFromBundle`, which verifies every check before a Vault exists (I7).
 */
export {
  fetchBundle,
  vaultFromBundle,
  verifyBundle,
  parseValidatorTrust,
  consistencyReference,
  memoryStateStore,
  emptyClientState,
  BundleError,
  BUNDLE_ERROR_CODES,
  type BundleErrorCode,
  type ValidatorTrust,
  type ValidatorTrustFile,
  type ClientState,
  type ClientStateStore,
  type VerifiedBundle,
} from './client/bundle.js';
