/**
 * The client SDK: register, recover, change the password of, delete and query a backup key in
 * the vault. Runs in Node and browsers (WebCrypto and the OPAQUE library only).
 *
 * I7: every request is encrypted to the pinned fleet key and nothing else; the OPAQUE server key
 * is checked against the pinned one at registration and every login; key stretching is this
 * client's own setting, never a server's.
 */
import { bytesEqual, toHex, utf8 } from '../crypto/bytes.js';
import { sealForFleet } from './channel.js';
import { clientFinishLogin, clientFinishRegistration, clientStartLogin, clientStartRegistration, opaqueReady, type KeyStretching } from '../crypto/opaque.js';
import { channelInfo, requestAad, type RequestEnvelope } from '../protocol/channel.js';
import { ProtocolError, type ErrorCode } from '../protocol/errors.js';
import { accountTag, inRanges, routingHint, validateUserId } from '../protocol/ids.js';
import { LABEL, PROTOCOL_VERSION, SUBKEY } from '../protocol/labels.js';
import { decodeResponse, encodeRequest, type GuessInfo, type VaultRequest, type VaultResponse } from '../protocol/messages.js';
import { sessionOpMacInput, sessionPayloadDigest, transportAd, wrapAd, type SessionOperation } from '../protocol/session.js';
import type { PinnedFleet } from '../protocol/fleet.js';
import { aesGcmOpen, aesGcmSeal, hkdf, hmacSha256, randomBytes } from './webcrypto.js';
import type { Transport } from './transport.js';

export const BACKUP_KEY_BYTES = 32;

/** An error the SDK reports, with a stable code and, for wrong passwords, the guesses left. */
export class VaultError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly guesses?: GuessInfo,
  ) {
    super(message);
    this.name = 'VaultError';
  }
}

export interface VaultOptions {
  fleet: PinnedFleet;
  transport: Transport;
  /** Defaults to the floor, 'memory-constrained' (Argon2id m = 64 MiB, t = 3, p = 4). */
  keyStretching?: KeyStretching;
}

export interface RecoverResult extends GuessInfo {
  key: Uint8Array;
  /** Failed attempts since the last success before this one: someone else may be guessing. */
  failuresBeforeThisLogin: number;
}

export interface StatusResult extends GuessInfo {
  state: 'none' | 'active' | 'tombstone';
  maxGuesses: number;
  fleetId: string;
}

interface Session {
  userId: string;
  sessionKey: Uint8Array;
  exportKey: Uint8Array;
  token: Uint8Array;
  generation: number;
  attempt: number;
  wrappedKey: Uint8Array;
  guessesBefore: GuessInfo;
}

type Ok<T extends VaultResponse['type']> = Extract<VaultResponse, { type: T; outcome: 'Ok' }>;

const MESSAGES: Partial<Record<ErrorCode, string>> = {
  NotRegistered: 'no backup key is registered for this user',
  Locked: 'the record is locked: its guesses are spent and it has been destroyed',
  AlreadyRegistered: 'a backup key is already registered for this user (recover it, or change its password)',
  RegistrationLimit: 'this user has reached the limit of registrations after destruction',
  StaleState: 'the request was superseded by a newer one (a replay, or a concurrent change); try again',
  OutcomeUnknown: 'the vault could not confirm the outcome: a guess may have been spent',
  WrongPassword: 'wrong password',
  OutOfRange: 'this user id is not served by the pinned fleet',
  BadSessionMac: 'the session is not valid for this operation',
};

export class Vault {
  private readonly stretching: KeyStretching;

  constructor(private readonly opts: VaultOptions) {
    this.stretching = opts.keyStretching ?? 'memory-constrained';
  }

  get fleetId(): Uint8Array {
    return this.opts.fleet.fleetId;
  }

  private ids(userId: string): { client: string; server: string } {
    return { client: userId, server: toHex(this.opts.fleet.fleetId) };
  }

  /** Seals a request to the pinned fleet key and opens the sealed answer. */
  private async call<T extends VaultRequest['type']>(req: Extract<VaultRequest, { type: T }>): Promise<Ok<T>> {
    const fleet = this.opts.fleet;
    const hint = routingHint(req.userId);
    if (!inRanges(hint, fleet.routes)) throw new VaultError('OutOfRange', MESSAGES.OutOfRange!);
    const head = { version: PROTOCOL_VERSION, type: req.type, hint, tag: accountTag(req.userId) };
    const sealed = await sealForFleet(fleet.keys.hpke, channelInfo(fleet.fleetId), requestAad(head), encodeRequest(req));
    const env: RequestEnvelope = { ...head, enc: sealed.enc, ciphertext: sealed.ciphertext };
    const reply = await this.opts.transport.send(env);
    if (reply.type === 'Error') throw new VaultError(reply.code, reply.message);
    let res: VaultResponse;
    try {
      res = decodeResponse(await sealed.openResponse(reply.body));
    } catch {
      throw new VaultError('Malformed', 'the response does not open under this request: not from the pinned fleet');
    }
    if (res.type !== req.type) throw new VaultError('Malformed', 'response type does not match the request');
    if (res.outcome === 'Error') throw new VaultError(res.code, MESSAGES[res.code] ?? res.code, res.guesses);
    return res as Ok<T>;
  }

  private checkServerKey(serverPublicKey: Uint8Array): void {
    // I7: the OPAQUE server key must be the pinned one, or the server is not our fleet.
    if (!bytesEqual(serverPublicKey, this.opts.fleet.keys.opaque)) throw new VaultError('TrustFailure', 'the OPAQUE server key is not the pinned fleet key');
  }

  private async wrap(exportKey: Uint8Array, userId: string, key: Uint8Array): Promise<Uint8Array> {
    const wrapKey = await hkdf(exportKey, utf8(LABEL.wrap), 32);
    return aesGcmSeal(wrapKey, key, wrapAd(this.fleetId, userId));
  }

  /** Runs OPAQUE registration and returns the record and W for a (new) password. */
  private async enrol(userId: string, password: string, key: Uint8Array, start: (registrationRequest: Uint8Array) => Promise<{ registrationResponse: Uint8Array; state: Uint8Array }>): Promise<{ registrationRecord: Uint8Array; wrappedKey: Uint8Array; state: Uint8Array }> {
    await opaqueReady;
    const reg = clientStartRegistration(password);
    const started = await start(reg.request);
    const fin = clientFinishRegistration(password, reg.state, started.registrationResponse, this.ids(userId), this.stretching);
    this.checkServerKey(fin.serverPublicKey);
    return { registrationRecord: fin.record, wrappedKey: await this.wrap(fin.exportKey, userId, key), state: started.state };
  }

  /**
   * Registers a backup key under a password. Generates a fresh random K unless one is given.
   * The vault receives only W, K wrapped under a key that only the password can rebuild.
   */
  async register(userId: string, password: string, opts: { maxGuesses?: number; key?: Uint8Array } = {}): Promise<{ key: Uint8Array; generation: number }> {
    validateUserId(userId);
    checkPassword(password);
    const maxGuesses = opts.maxGuesses ?? 10;
    if (!Number.isInteger(maxGuesses) || maxGuesses < 1 || maxGuesses > 255) throw new VaultError('BadRequest', 'maxGuesses must be 1..255');
    const key = opts.key ?? randomBytes(BACKUP_KEY_BYTES);
    if (key.length !== BACKUP_KEY_BYTES) throw new VaultError('BadRequest', 'the backup key must be 32 bytes');
    const e = await this.enrol(userId, password, key, async (registrationRequest) => this.call({ type: 'RegisterStart', userId, registrationRequest }));
    const done = await this.call({ type: 'RegisterFinish', userId, registrationRecord: e.registrationRecord, wrappedKey: e.wrappedKey, maxGuesses, state: e.state });
    return { key, generation: done.generation };
  }

  /** Logs in with OPAQUE; each call spends one guess until it succeeds (I1). */
  private async login(userId: string, password: string): Promise<Session> {
    validateUserId(userId);
    checkPassword(password);
    await opaqueReady;
    const start = clientStartLogin(password);
    const ke2 = await this.call({ type: 'RecoverStart', userId, ke1: start.ke1 });
    const guessesBefore = { guessesLeft: ke2.guessesLeft, failuresSinceLastSuccess: ke2.failuresSinceLastSuccess };
    const fin = clientFinishLogin(password, start.state, ke2.ke2, this.ids(userId), this.stretching);
    if (!fin) throw new VaultError('WrongPassword', MESSAGES.WrongPassword!, { guessesLeft: ke2.guessesLeft, failuresSinceLastSuccess: ke2.failuresSinceLastSuccess + 1 });
    this.checkServerKey(fin.serverPublicKey);
    const done = await this.call({ type: 'RecoverFinish', userId, ke3: fin.ke3, state: ke2.state });
    const transportKey = await hkdf(fin.sessionKey, utf8(LABEL.transport), 32);
    const wrappedKey = await aesGcmOpen(transportKey, done.sealedWrappedKey, transportAd(this.fleetId, userId, done.generation, done.attempt));
    if (!wrappedKey) throw new VaultError('TrustFailure', 'the returned key is not sealed under this session');
    return { userId, sessionKey: fin.sessionKey, exportKey: fin.exportKey, token: done.sessionToken, generation: done.generation, attempt: done.attempt, wrappedKey, guessesBefore };
  }

  private async unwrap(s: Session): Promise<Uint8Array> {
    const wrapKey = await hkdf(s.exportKey, utf8(LABEL.wrap), 32);
    const key = await aesGcmOpen(wrapKey, s.wrappedKey, wrapAd(this.fleetId, s.userId));
    // A swapped or altered record cannot unwrap: the key is bound to this user and fleet.
    if (!key) throw new VaultError('TrustFailure', 'the wrapped key does not open: the record is not this user\'s');
    return key;
  }

  /** Recovers K with the password. Wrong passwords throw VaultError('WrongPassword') with guesses left. */
  async recover(userId: string, password: string): Promise<RecoverResult> {
    const s = await this.login(userId, password);
    const key = await this.unwrap(s);
    return { key, guessesLeft: s.guessesBefore.guessesLeft, failuresSinceLastSuccess: 0, failuresBeforeThisLogin: s.guessesBefore.failuresSinceLastSuccess };
  }

  private async auth(s: Session, req: Extract<VaultRequest, { type: SessionOperation }>): Promise<Uint8Array> {
    const opKey = await hkdf(s.sessionKey, utf8(SUBKEY.sessionOp), 32);
    return hmacSha256(opKey, sessionOpMacInput(req.type, this.fleetId, s.userId, s.generation, s.attempt, sessionPayloadDigest(req)));
  }

  /** Changes the password: logs in with the old one, re-registers K under the new one. */
  async changePassword(userId: string, oldPassword: string, newPassword: string, opts: { maxGuesses?: number } = {}): Promise<{ generation: number }> {
    checkPassword(newPassword);
    // Keep the user's current guess limit unless the caller sets a new one.
    const maxGuesses = opts.maxGuesses ?? (await this.status(userId)).maxGuesses;
    const s = await this.login(userId, oldPassword);
    const key = await this.unwrap(s);
    const e = await this.enrol(userId, newPassword, key, async (registrationRequest) => {
      const req = { type: 'ChangePasswordStart' as const, userId, auth: { token: s.token, mac: new Uint8Array(32) as Uint8Array }, registrationRequest };
      req.auth.mac = await this.auth(s, req);
      return this.call(req);
    });
    const req = { type: 'ChangePasswordFinish' as const, userId, auth: { token: s.token, mac: new Uint8Array(32) as Uint8Array }, registrationRecord: e.registrationRecord, wrappedKey: e.wrappedKey, maxGuesses, state: e.state };
    req.auth.mac = await this.auth(s, req);
    const done = await this.call(req);
    return { generation: done.generation };
  }

  /** Deletes the record (a tombstone remains). Requires the password. */
  async delete(userId: string, password: string): Promise<void> {
    const s = await this.login(userId, password);
    const req = { type: 'Delete' as const, userId, auth: { token: s.token, mac: new Uint8Array(32) as Uint8Array } };
    req.auth.mac = await this.auth(s, req);
    await this.call(req);
  }

  /** Registered?, guesses left, failures since the last success. Read through the log. */
  async status(userId: string): Promise<StatusResult> {
    validateUserId(userId);
    const nonce = randomBytes(16);
    const res = await this.call({ type: 'Status', userId, nonce });
    if (!bytesEqual(res.nonce, nonce)) throw new VaultError('Malformed', 'status answer is not for this request');
    if (!bytesEqual(res.fleetId, this.fleetId)) throw new VaultError('TrustFailure', 'status answer names another fleet');
    return { state: res.state, maxGuesses: res.maxGuesses, guessesLeft: res.guessesLeft, failuresSinceLastSuccess: res.failuresSinceLastSuccess, fleetId: toHex(res.fleetId) };
  }
}

function checkPassword(password: string): void {
  if (typeof password !== 'string' || password.length === 0) throw new VaultError('BadRequest', 'the password must not be empty');
  if (utf8(password).length > 1024) throw new VaultError('BadRequest', 'the password is too long (1024 bytes at most)');
}

export { ProtocolError };
