/**
 * Structures shared by the client and the HSM for what follows a successful login: the MAC that
 * authorises a password change or deletion, and the associated data of the wrapped key W.
 */
import { Writer } from './encoding.js';
import { LABEL, PROTOCOL_VERSION } from './labels.js';
import { sha256 } from '../crypto/sha256.js';
import type { VaultRequest } from './messages.js';

export type SessionOperation = 'ChangePasswordStart' | 'ChangePasswordFinish' | 'Delete';

/** The bytes a session-op MAC covers: (operation, fleet, user, generation, attempt, payload). */
export function sessionOpMacInput(op: SessionOperation, fleetId: Uint8Array, userId: string, generation: number, attempt: number, payloadDigest: Uint8Array): Uint8Array {
  return new Writer().label(LABEL.sessionOpMac).fixed(fleetId, 32).string(op).string(userId).u64(generation).u64(attempt).fixed(payloadDigest, 32).finish();
}

/** Digest of an operation's payload, so the MAC binds every field the HSM acts on. */
export function sessionPayloadDigest(req: Extract<VaultRequest, { type: SessionOperation }>): Uint8Array {
  const w = new Writer().label('bkv/v1/session-payload').string(req.type);
  switch (req.type) {
    case 'ChangePasswordStart':
      w.bytes(req.registrationRequest);
      break;
    case 'ChangePasswordFinish':
      w.bytes(req.registrationRecord).bytes(req.wrappedKey).u8(req.maxGuesses).bytes(req.state);
      break;
    case 'Delete':
      break;
  }
  return sha256(w.finish());
}

/** AD of the wrapped key W = AEAD(HKDF(export_key, "bkv/v1/wrap"), K, AD = version || fleet id || user id). */
export function wrapAd(fleetId: Uint8Array, userId: string): Uint8Array {
  return new Writer().label(LABEL.wrapAd).u16(PROTOCOL_VERSION).fixed(fleetId, 32).string(userId).finish();
}

/** AD of W as returned after a successful login, sealed under a key from the session key. */
export function transportAd(fleetId: Uint8Array, userId: string, generation: number, attempt: number): Uint8Array {
  return new Writer().label(LABEL.transport).fixed(fleetId, 32).string(userId).u64(generation).u64(attempt).finish();
}
