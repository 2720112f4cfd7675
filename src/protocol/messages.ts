/**
 * The vault protocol's messages (DESIGN section 4): one request and one response type per
 * operation, each with one canonical binary encoding. These travel inside the HPKE channel;
 * the front end and agents never see them in clear (I6).
 */
import { Reader, Writer } from './encoding.js';
import { LABEL, PROTOCOL_VERSION } from './labels.js';
import { ERROR_CODES, ProtocolError, isErrorCode, type ErrorCode } from './errors.js';
import { OPAQUE_SIZES } from '../crypto/opaque-sizes.js';

export const MESSAGE_TYPES = [
  'RegisterStart',
  'RegisterFinish',
  'RecoverStart',
  'RecoverFinish',
  'ChangePasswordStart',
  'ChangePasswordFinish',
  'Delete',
  'Status',
] as const;
export type MessageType = (typeof MESSAGE_TYPES)[number];

export function messageTypeCode(t: MessageType): number {
  return MESSAGE_TYPES.indexOf(t) + 1;
}

export function messageTypeFromCode(c: number): MessageType {
  const t = MESSAGE_TYPES[c - 1];
  if (!t) throw new ProtocolError('UnknownMessageType', 'unknown message type');
  return t;
}

export function isMessageType(v: unknown): v is MessageType {
  return typeof v === 'string' && (MESSAGE_TYPES as readonly string[]).includes(v);
}

/** Upper bounds enforced when decoding (I8). */
export const LIMITS = {
  wrappedKey: 128,
  sealedState: 1024,
  nonce: 32,
  sessionMac: 32,
  plaintext: 4096,
} as const;

/** Proof that the caller holds the session key of a successful login (change password, delete). */
export interface SessionAuth {
  token: Uint8Array;
  mac: Uint8Array;
}

export type VaultRequest =
  | { type: 'RegisterStart'; userId: string; registrationRequest: Uint8Array }
  | { type: 'RegisterFinish'; userId: string; registrationRecord: Uint8Array; wrappedKey: Uint8Array; maxGuesses: number; state: Uint8Array }
  | { type: 'RecoverStart'; userId: string; ke1: Uint8Array }
  | { type: 'RecoverFinish'; userId: string; ke3: Uint8Array; state: Uint8Array }
  | { type: 'ChangePasswordStart'; userId: string; auth: SessionAuth; registrationRequest: Uint8Array }
  | { type: 'ChangePasswordFinish'; userId: string; auth: SessionAuth; registrationRecord: Uint8Array; wrappedKey: Uint8Array; maxGuesses: number; state: Uint8Array }
  | { type: 'Delete'; userId: string; auth: SessionAuth }
  | { type: 'Status'; userId: string; nonce: Uint8Array };

function writeAuth(w: Writer, a: SessionAuth): void {
  w.bytes(a.token).fixed(a.mac, LIMITS.sessionMac);
}

function readAuth(r: Reader): SessionAuth {
  return { token: r.bytes(LIMITS.sealedState), mac: r.fixed(LIMITS.sessionMac) };
}

export function encodeRequest(req: VaultRequest): Uint8Array {
  const w = new Writer().label(LABEL.request).u16(PROTOCOL_VERSION).u8(messageTypeCode(req.type)).string(req.userId);
  switch (req.type) {
    case 'RegisterStart':
      w.fixed(req.registrationRequest, OPAQUE_SIZES.registrationRequest);
      break;
    case 'RegisterFinish':
      w.fixed(req.registrationRecord, OPAQUE_SIZES.registrationRecord).bytes(req.wrappedKey).u8(req.maxGuesses).bytes(req.state);
      break;
    case 'RecoverStart':
      w.fixed(req.ke1, OPAQUE_SIZES.ke1);
      break;
    case 'RecoverFinish':
      w.fixed(req.ke3, OPAQUE_SIZES.ke3).bytes(req.state);
      break;
    case 'ChangePasswordStart':
      writeAuth(w, req.auth);
      w.fixed(req.registrationRequest, OPAQUE_SIZES.registrationRequest);
      break;
    case 'ChangePasswordFinish':
      writeAuth(w, req.auth);
      w.fixed(req.registrationRecord, OPAQUE_SIZES.registrationRecord).bytes(req.wrappedKey).u8(req.maxGuesses).bytes(req.state);
      break;
    case 'Delete':
      writeAuth(w, req.auth);
      break;
    case 'Status':
      w.bytes(req.nonce);
      break;
  }
  return w.finish();
}

/** Strict decoding: unknown versions, wrong sizes and trailing bytes are refused (I8). */
export function decodeRequest(buf: Uint8Array): VaultRequest {
  if (buf.length > LIMITS.plaintext) throw new ProtocolError('TooLarge', 'request too large');
  const r = new Reader(buf, LIMITS.plaintext).expectLabel(LABEL.request);
  const version = r.u16();
  if (version !== PROTOCOL_VERSION) throw new ProtocolError('UnsupportedVersion', `unsupported protocol version ${version}`);
  const type = messageTypeFromCode(r.u8());
  const userId = r.string(256);
  let req: VaultRequest;
  switch (type) {
    case 'RegisterStart':
      req = { type, userId, registrationRequest: r.fixed(OPAQUE_SIZES.registrationRequest) };
      break;
    case 'RegisterFinish':
      req = { type, userId, registrationRecord: r.fixed(OPAQUE_SIZES.registrationRecord), wrappedKey: r.bytes(LIMITS.wrappedKey), maxGuesses: r.u8(), state: r.bytes(LIMITS.sealedState) };
      break;
    case 'RecoverStart':
      req = { type, userId, ke1: r.fixed(OPAQUE_SIZES.ke1) };
      break;
    case 'RecoverFinish':
      req = { type, userId, ke3: r.fixed(OPAQUE_SIZES.ke3), state: r.bytes(LIMITS.sealedState) };
      break;
    case 'ChangePasswordStart':
      req = { type, userId, auth: readAuth(r), registrationRequest: r.fixed(OPAQUE_SIZES.registrationRequest) };
      break;
    case 'ChangePasswordFinish':
      req = { type, userId, auth: readAuth(r), registrationRecord: r.fixed(OPAQUE_SIZES.registrationRecord), wrappedKey: r.bytes(LIMITS.wrappedKey), maxGuesses: r.u8(), state: r.bytes(LIMITS.sealedState) };
      break;
    case 'Delete':
      req = { type, userId, auth: readAuth(r) };
      break;
    case 'Status':
      req = { type, userId, nonce: r.bytes(LIMITS.nonce) };
      break;
  }
  r.done();
  return req;
}

/** Counters a response may carry so a client can warn its user (I1). */
export interface GuessInfo {
  guessesLeft: number;
  failuresSinceLastSuccess: number;
}

export type VaultResponse =
  | { type: 'RegisterStart'; outcome: 'Ok'; registrationResponse: Uint8Array; state: Uint8Array }
  | { type: 'RegisterFinish'; outcome: 'Ok'; generation: number }
  | ({ type: 'RecoverStart'; outcome: 'Ok'; ke2: Uint8Array; state: Uint8Array } & GuessInfo)
  | { type: 'RecoverFinish'; outcome: 'Ok'; sealedWrappedKey: Uint8Array; sessionToken: Uint8Array; generation: number; attempt: number }
  | { type: 'ChangePasswordStart'; outcome: 'Ok'; registrationResponse: Uint8Array; state: Uint8Array }
  | { type: 'ChangePasswordFinish'; outcome: 'Ok'; generation: number }
  | { type: 'Delete'; outcome: 'Ok' }
  | ({ type: 'Status'; outcome: 'Ok'; nonce: Uint8Array; fleetId: Uint8Array; state: 'none' | 'active' | 'tombstone'; maxGuesses: number } & GuessInfo)
  | { type: MessageType; outcome: 'Error'; code: ErrorCode; guesses?: GuessInfo };

const RECORD_STATES = ['none', 'active', 'tombstone'] as const;

export function encodeResponse(res: VaultResponse): Uint8Array {
  const w = new Writer().label(LABEL.reply).u16(PROTOCOL_VERSION).u8(messageTypeCode(res.type));
  if (res.outcome === 'Error') {
    w.u8(0).string(res.code).bool(res.guesses !== undefined);
    if (res.guesses) w.u8(res.guesses.guessesLeft).u32(res.guesses.failuresSinceLastSuccess);
    return w.finish();
  }
  w.u8(1);
  switch (res.type) {
    case 'RegisterStart':
    case 'ChangePasswordStart':
      w.fixed(res.registrationResponse, OPAQUE_SIZES.registrationResponse).bytes(res.state);
      break;
    case 'RegisterFinish':
    case 'ChangePasswordFinish':
      w.u64(res.generation);
      break;
    case 'RecoverStart':
      w.fixed(res.ke2, OPAQUE_SIZES.ke2).bytes(res.state).u8(res.guessesLeft).u32(res.failuresSinceLastSuccess);
      break;
    case 'RecoverFinish':
      w.bytes(res.sealedWrappedKey).bytes(res.sessionToken).u64(res.generation).u64(res.attempt);
      break;
    case 'Delete':
      break;
    case 'Status':
      w.bytes(res.nonce).fixed(res.fleetId, 32).u8(RECORD_STATES.indexOf(res.state)).u8(res.maxGuesses).u8(res.guessesLeft).u32(res.failuresSinceLastSuccess);
      break;
  }
  return w.finish();
}

export function decodeResponse(buf: Uint8Array): VaultResponse {
  const r = new Reader(buf, LIMITS.plaintext).expectLabel(LABEL.reply);
  const version = r.u16();
  if (version !== PROTOCOL_VERSION) throw new ProtocolError('UnsupportedVersion', `unsupported protocol version ${version}`);
  const type = messageTypeFromCode(r.u8());
  const ok = r.u8();
  let res: VaultResponse;
  if (ok === 0) {
    const code = r.string(64);
    if (!isErrorCode(code)) throw new ProtocolError('Malformed', 'unknown error code');
    const hasGuesses = r.bool();
    res = hasGuesses ? { type, outcome: 'Error', code, guesses: { guessesLeft: r.u8(), failuresSinceLastSuccess: r.u32() } } : { type, outcome: 'Error', code };
  } else if (ok === 1) {
    switch (type) {
      case 'RegisterStart':
      case 'ChangePasswordStart':
        res = { type, outcome: 'Ok', registrationResponse: r.fixed(OPAQUE_SIZES.registrationResponse), state: r.bytes(LIMITS.sealedState) };
        break;
      case 'RegisterFinish':
      case 'ChangePasswordFinish':
        res = { type, outcome: 'Ok', generation: r.u64() };
        break;
      case 'RecoverStart':
        res = { type, outcome: 'Ok', ke2: r.fixed(OPAQUE_SIZES.ke2), state: r.bytes(LIMITS.sealedState), guessesLeft: r.u8(), failuresSinceLastSuccess: r.u32() };
        break;
      case 'RecoverFinish':
        res = { type, outcome: 'Ok', sealedWrappedKey: r.bytes(LIMITS.wrappedKey + 64), sessionToken: r.bytes(LIMITS.sealedState), generation: r.u64(), attempt: r.u64() };
        break;
      case 'Delete':
        res = { type, outcome: 'Ok' };
        break;
      case 'Status': {
        const nonce = r.bytes(LIMITS.nonce);
        const fleetId = r.fixed(32);
        const state = RECORD_STATES[r.u8()];
        if (!state) throw new ProtocolError('Malformed', 'unknown record state');
        res = { type, outcome: 'Ok', nonce, fleetId, state, maxGuesses: r.u8(), guessesLeft: r.u8(), failuresSinceLastSuccess: r.u32() };
        break;
      }
    }
  } else {
    throw new ProtocolError('Malformed', 'bad outcome');
  }
  r.done();
  return res;
}

export { ERROR_CODES };
