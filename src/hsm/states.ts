/**
 * States the HSM hands to the client between two steps of an operation, sealed under their own
 * subkeys: the registration state (between RegisterStart and RegisterFinish), the login state
 * (between KE1 and KE3) and the session token (after a successful login). Each is bound to the
 * record id and the generation (and attempt) it was issued for, so a replay after any state
 * change is refused (I1a).
 */
import { Reader, Writer } from '../protocol/encoding.js';
import { aesGcmOpen, aesGcmSeal, AES_GCM_NONCE } from '../crypto/server.js';
import { concatBytes } from '../crypto/bytes.js';

export interface RegisterState {
  recordId: Uint8Array;
  expectedGeneration: number;
  nonce: Uint8Array;
  /** 'register' over no record or a tombstone; 'change' inside a login session. */
  mode: 'register' | 'change';
}

export interface LoginState {
  recordId: Uint8Array;
  generation: number;
  attempt: number;
  serverState: Uint8Array;
}

export interface SessionToken {
  recordId: Uint8Array;
  generation: number;
  attempt: number;
  /** HKDF(session key, "bkv/v1/session-op"): the key of session-op MACs. */
  sessionOpKey: Uint8Array;
}

const REG = 'bkv/v1/register-state';
const LOGIN = 'bkv/v1/login-state';
const SESSION = 'bkv/v1/session';

function ad(label: string, fleetId: Uint8Array): Uint8Array {
  return new Writer().label(label).fixed(fleetId, 32).finish();
}

function seal(key: Uint8Array, label: string, fleetId: Uint8Array, body: Uint8Array, nonce: Uint8Array): Uint8Array {
  return concatBytes(nonce, aesGcmSeal(key, nonce, body, ad(label, fleetId)));
}

function open(key: Uint8Array, label: string, fleetId: Uint8Array, sealed: Uint8Array): Reader | null {
  if (sealed.length < AES_GCM_NONCE + 16) return null;
  const pt = aesGcmOpen(key, sealed.subarray(0, AES_GCM_NONCE), sealed.subarray(AES_GCM_NONCE), ad(label, fleetId));
  if (!pt) return null;
  return new Reader(pt).expectLabel(label);
}

function tryDecode<T>(f: () => T): T | null {
  try {
    return f();
  } catch {
    return null;
  }
}

export function sealRegisterState(key: Uint8Array, fleetId: Uint8Array, s: RegisterState, nonce: Uint8Array): Uint8Array {
  const body = new Writer().label(REG).fixed(s.recordId, 32).u64(s.expectedGeneration).fixed(s.nonce, 32).u8(s.mode === 'register' ? 1 : 2).finish();
  return seal(key, REG, fleetId, body, nonce);
}

export function openRegisterState(key: Uint8Array, fleetId: Uint8Array, sealed: Uint8Array): RegisterState | null {
  return tryDecode(() => {
    const r = open(key, REG, fleetId, sealed);
    if (!r) return null;
    const s = { recordId: r.fixed(32), expectedGeneration: r.u64(), nonce: r.fixed(32), mode: r.u8() === 1 ? ('register' as const) : ('change' as const) };
    r.done();
    return s;
  });
}

export function sealLoginState(key: Uint8Array, fleetId: Uint8Array, s: LoginState, nonce: Uint8Array): Uint8Array {
  const body = new Writer().label(LOGIN).fixed(s.recordId, 32).u64(s.generation).u64(s.attempt).bytes(s.serverState).finish();
  return seal(key, LOGIN, fleetId, body, nonce);
}

export function openLoginState(key: Uint8Array, fleetId: Uint8Array, sealed: Uint8Array): LoginState | null {
  return tryDecode(() => {
    const r = open(key, LOGIN, fleetId, sealed);
    if (!r) return null;
    const s = { recordId: r.fixed(32), generation: r.u64(), attempt: r.u64(), serverState: r.bytes(512) };
    r.done();
    return s;
  });
}

export function sealSessionToken(key: Uint8Array, fleetId: Uint8Array, s: SessionToken, nonce: Uint8Array): Uint8Array {
  const body = new Writer().label(SESSION).fixed(s.recordId, 32).u64(s.generation).u64(s.attempt).fixed(s.sessionOpKey, 32).finish();
  return seal(key, SESSION, fleetId, body, nonce);
}

export function openSessionToken(key: Uint8Array, fleetId: Uint8Array, sealed: Uint8Array): SessionToken | null {
  return tryDecode(() => {
    const r = open(key, SESSION, fleetId, sealed);
    if (!r) return null;
    const s = { recordId: r.fixed(32), generation: r.u64(), attempt: r.u64(), sessionOpKey: r.fixed(32) };
    r.done();
    return s;
  });
}
