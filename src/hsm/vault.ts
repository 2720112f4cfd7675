/**
 * The vault's rules for one request against one record slot (DESIGN section 4). Pure apart from
 * the RNG passed in: given the slot on the leader's tip, it returns the slot to write (if any) and
 * the response to release once the entry that holds the write is committed.
 */
import { Writer } from '../protocol/encoding.js';
import { LABEL, SUBKEY } from '../protocol/labels.js';
import type { GuessInfo, VaultRequest, VaultResponse } from '../protocol/messages.js';
import { sessionOpMacInput, sessionPayloadDigest, transportAd } from '../protocol/session.js';
import type { ErrorCode } from '../protocol/errors.js';
import { toBase64Url, utf8, concatBytes, bytesEqual } from '../crypto/bytes.js';
import { aesGcmSeal, hkdf, verifyHmacSha256, AES_GCM_NONCE } from '../crypto/server.js';
import { serverFinishLogin, serverRegistrationResponse, serverStartLogin } from '../crypto/opaque.js';
import { toHex } from '../crypto/bytes.js';
import type { FleetPolicy, Subkeys } from './keys.js';
import type { ActiveRecord, RecordSlot, Tombstone } from './record.js';
import { openLoginState, openRegisterState, openSessionToken, sealLoginState, sealRegisterState, sealSessionToken, type SessionToken } from './states.js';

export interface VaultContext {
  fleetId: Uint8Array;
  subkeys: Subkeys;
  opaqueSetup: Uint8Array;
  policy: FleetPolicy;
  randomBytes(n: number): Uint8Array;
}

export interface VaultOutcome {
  /** The slot to write at the record id, or undefined when nothing changes. */
  write?: RecordSlot;
  response: VaultResponse;
}

/** OPAQUE credential identifier: "bkv/v1/cred" || len || user id || per-registration nonce (I2). */
export function credentialId(userId: string, nonce: Uint8Array): string {
  return toBase64Url(new Writer().label(LABEL.credential).string(userId).fixed(nonce, 32).finish());
}

function opaqueIds(ctx: VaultContext, userId: string): { client: string; server: string } {
  return { client: userId, server: toHex(ctx.fleetId) };
}

function fail(type: VaultRequest['type'], code: ErrorCode, guesses?: GuessInfo): VaultOutcome {
  return { response: guesses ? { type, outcome: 'Error', code, guesses } : { type, outcome: 'Error', code } };
}

function guessInfo(r: ActiveRecord): GuessInfo {
  return { guessesLeft: Math.max(0, r.maxGuesses - r.guessesUsed), failuresSinceLastSuccess: r.failuresSinceLastSuccess };
}

/** I3: the record's OPAQUE record and W are gone; the generation and destruction count remain. */
function destroy(r: ActiveRecord): Tombstone {
  return { state: 'tombstone', generation: r.generation + 1, attempt: r.attempt, destructions: r.destructions + 1 };
}

function validMaxGuesses(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && n <= 255;
}

/** Checks a session-op request: a live session of this record, and a MAC under its key. */
function checkSession(ctx: VaultContext, req: Extract<VaultRequest, { type: 'ChangePasswordStart' | 'ChangePasswordFinish' | 'Delete' }>, recordId: Uint8Array, slot: RecordSlot | undefined): { ok: true; token: SessionToken; record: ActiveRecord } | { ok: false; code: ErrorCode } {
  const token = openSessionToken(ctx.subkeys.session, ctx.fleetId, req.auth.token);
  if (!token || !bytesEqual(token.recordId, recordId)) return { ok: false, code: 'BadSessionMac' };
  if (!slot || slot.state !== 'active') return { ok: false, code: slot ? 'Locked' : 'NotRegistered' };
  // I1a: the session belongs to one generation and one attempt; any later change or KE1 ends it.
  if (slot.generation !== token.generation || slot.attempt !== token.attempt) return { ok: false, code: 'StaleState' };
  const input = sessionOpMacInput(req.type, ctx.fleetId, req.userId, token.generation, token.attempt, sessionPayloadDigest(req));
  if (!verifyHmacSha256(token.sessionOpKey, req.auth.mac, input)) return { ok: false, code: 'BadSessionMac' };
  return { ok: true, token, record: slot };
}

export function applyVaultRequest(ctx: VaultContext, req: VaultRequest, recordId: Uint8Array, slot: RecordSlot | undefined): VaultOutcome {
  switch (req.type) {
    case 'Status': {
      const base = { type: 'Status' as const, outcome: 'Ok' as const, nonce: req.nonce, fleetId: ctx.fleetId };
      if (!slot) return { response: { ...base, state: 'none', maxGuesses: 0, guessesLeft: 0, failuresSinceLastSuccess: 0 } };
      if (slot.state === 'tombstone') return { response: { ...base, state: 'tombstone', maxGuesses: 0, guessesLeft: 0, failuresSinceLastSuccess: 0 } };
      return { response: { ...base, state: 'active', maxGuesses: slot.maxGuesses, ...guessInfo(slot) } };
    }

    case 'RegisterStart': {
      // I2: an OPRF evaluation under an active record's user would be an unmetered oracle.
      if (slot?.state === 'active') return fail(req.type, 'AlreadyRegistered');
      // I2a: registrations after destructions are bounded.
      if (slot && slot.destructions > ctx.policy.reRegistrationLimit) return fail(req.type, 'RegistrationLimit');
      const nonce = ctx.randomBytes(32);
      const registrationResponse = serverRegistrationResponse(ctx.opaqueSetup, credentialId(req.userId, nonce), req.registrationRequest);
      const state = sealRegisterState(ctx.subkeys.registerState, ctx.fleetId, { recordId, expectedGeneration: slot?.generation ?? 0, nonce, mode: 'register' }, ctx.randomBytes(AES_GCM_NONCE));
      return { response: { type: req.type, outcome: 'Ok', registrationResponse, state } };
    }

    case 'RegisterFinish': {
      const st = openRegisterState(ctx.subkeys.registerState, ctx.fleetId, req.state);
      if (!st || st.mode !== 'register' || !bytesEqual(st.recordId, recordId)) return fail(req.type, 'StaleState');
      if (slot?.state === 'active') return fail(req.type, 'AlreadyRegistered');
      // I1a: compare-and-set on the generation; a replay after any change finds a newer one.
      if ((slot?.generation ?? 0) !== st.expectedGeneration) return fail(req.type, 'StaleState');
      if (slot && slot.destructions > ctx.policy.reRegistrationLimit) return fail(req.type, 'RegistrationLimit');
      if (!validMaxGuesses(req.maxGuesses)) return fail(req.type, 'BadRequest');
      const write: ActiveRecord = {
        state: 'active',
        generation: st.expectedGeneration + 1,
        attempt: slot?.attempt ?? 0,
        finishedAttempt: slot?.attempt ?? 0,
        guessesUsed: 0,
        maxGuesses: req.maxGuesses,
        failuresSinceLastSuccess: 0,
        destructions: slot?.destructions ?? 0,
        registrationNonce: st.nonce,
        opaqueRecord: req.registrationRecord,
        wrappedKey: req.wrappedKey,
      };
      return { write, response: { type: req.type, outcome: 'Ok', generation: write.generation } };
    }

    case 'RecoverStart': {
      if (!slot) return fail(req.type, 'NotRegistered');
      if (slot.state === 'tombstone') return fail(req.type, 'Locked');
      if (slot.guessesUsed >= slot.maxGuesses) {
        // The last guess was handed out and not redeemed: the record is spent (I1, I3).
        return { write: destroy(slot), response: { type: req.type, outcome: 'Error', code: 'Locked' } };
      }
      // I1: count the guess before KE2 exists; the response leaves the HSM only after the
      // entry holding this count is committed.
      const previousFailures = slot.failuresSinceLastSuccess;
      const write: ActiveRecord = { ...slot, guessesUsed: slot.guessesUsed + 1, attempt: slot.attempt + 1, failuresSinceLastSuccess: slot.failuresSinceLastSuccess + 1 };
      const { ke2, state: serverState } = serverStartLogin(ctx.opaqueSetup, credentialId(req.userId, slot.registrationNonce), slot.opaqueRecord, req.ke1, opaqueIds(ctx, req.userId));
      const state = sealLoginState(ctx.subkeys.loginState, ctx.fleetId, { recordId, generation: write.generation, attempt: write.attempt, serverState }, ctx.randomBytes(AES_GCM_NONCE));
      return { write, response: { type: req.type, outcome: 'Ok', ke2, state, guessesLeft: write.maxGuesses - write.guessesUsed, failuresSinceLastSuccess: previousFailures } };
    }

    case 'RecoverFinish': {
      const st = openLoginState(ctx.subkeys.loginState, ctx.fleetId, req.state);
      if (!st || !bytesEqual(st.recordId, recordId)) return fail(req.type, 'StaleState');
      if (!slot) return fail(req.type, 'NotRegistered');
      if (slot.state === 'tombstone') return fail(req.type, 'Locked');
      // I1a: only the latest counted attempt of the current generation, and only once.
      if (slot.generation !== st.generation || slot.attempt !== st.attempt || slot.finishedAttempt >= st.attempt) return fail(req.type, 'StaleState', guessInfo(slot));
      const ids = opaqueIds(ctx, req.userId);
      const sessionKey = serverFinishLogin(st.serverState, req.ke3, ids);
      if (!sessionKey) {
        const consumed: ActiveRecord = { ...slot, finishedAttempt: st.attempt };
        if (consumed.guessesUsed >= consumed.maxGuesses) return { write: destroy(consumed), response: { type: req.type, outcome: 'Error', code: 'Locked' } };
        return { write: consumed, response: { type: req.type, outcome: 'Error', code: 'WrongPassword', guesses: guessInfo(consumed) } };
      }
      const write: ActiveRecord = { ...slot, finishedAttempt: st.attempt, guessesUsed: 0, failuresSinceLastSuccess: 0 };
      const transportKey = hkdf(sessionKey, new Uint8Array(0), utf8(LABEL.transport), 32);
      const nonce = ctx.randomBytes(AES_GCM_NONCE);
      const sealedWrappedKey = concatBytes(nonce, aesGcmSeal(transportKey, nonce, slot.wrappedKey, transportAd(ctx.fleetId, req.userId, write.generation, write.attempt)));
      const sessionOpKey = hkdf(sessionKey, new Uint8Array(0), utf8(SUBKEY.sessionOp), 32);
      const sessionToken = sealSessionToken(ctx.subkeys.session, ctx.fleetId, { recordId, generation: write.generation, attempt: write.attempt, sessionOpKey }, ctx.randomBytes(AES_GCM_NONCE));
      return { write, response: { type: req.type, outcome: 'Ok', sealedWrappedKey, sessionToken, generation: write.generation, attempt: write.attempt } };
    }

    case 'ChangePasswordStart': {
      const s = checkSession(ctx, req, recordId, slot);
      if (!s.ok) return fail(req.type, s.code);
      // I2: the only OPRF evaluation over an active record outside a login, and it is authenticated.
      const nonce = ctx.randomBytes(32);
      const registrationResponse = serverRegistrationResponse(ctx.opaqueSetup, credentialId(req.userId, nonce), req.registrationRequest);
      const state = sealRegisterState(ctx.subkeys.registerState, ctx.fleetId, { recordId, expectedGeneration: s.record.generation, nonce, mode: 'change' }, ctx.randomBytes(AES_GCM_NONCE));
      return { response: { type: req.type, outcome: 'Ok', registrationResponse, state } };
    }

    case 'ChangePasswordFinish': {
      const s = checkSession(ctx, req, recordId, slot);
      if (!s.ok) return fail(req.type, s.code);
      const st = openRegisterState(ctx.subkeys.registerState, ctx.fleetId, req.state);
      if (!st || st.mode !== 'change' || !bytesEqual(st.recordId, recordId) || st.expectedGeneration !== s.record.generation) return fail(req.type, 'StaleState');
      if (!validMaxGuesses(req.maxGuesses)) return fail(req.type, 'BadRequest');
      const write: ActiveRecord = {
        ...s.record,
        generation: s.record.generation + 1,
        guessesUsed: 0,
        failuresSinceLastSuccess: 0,
        maxGuesses: req.maxGuesses,
        registrationNonce: st.nonce,
        opaqueRecord: req.registrationRecord,
        wrappedKey: req.wrappedKey,
      };
      return { write, response: { type: req.type, outcome: 'Ok', generation: write.generation } };
    }

    case 'Delete': {
      const s = checkSession(ctx, req, recordId, slot);
      if (!s.ok) return fail(req.type, s.code);
      return { write: destroy(s.record), response: { type: req.type, outcome: 'Ok' } };
    }
  }
}
