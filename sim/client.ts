/**
 * Simulated clients: they seal requests exactly as the SDK does (HPKE to the fleet key, OHTTP-style
 * response), but synchronously and with seeded ephemeral keys, and run OPAQUE through the real
 * library (whose randomness the run seeds). Users register, recover with the right or a wrong
 * password, flood KE1s without ever sending KE3, ask for their status, and delete.
 *
 * Clients are the model's source of "what a client was told": every answer they open is handed to
 * the checker (I4, I5), and a correct password that stops verifying is itself a violation.
 */
import { bytesEqual, concatBytes, toHex, utf8 } from '../src/crypto/bytes.js';
import { aesGcmOpen, aesGcmSeal, hkdf, hmacSha256 } from '../src/crypto/server.js';
import { setupBaseSenderSync } from '../src/crypto/hpke-node.js';
import { RESPONSE_EXPORT_LABEL, RESPONSE_NONCE_LENGTH } from '../src/crypto/hpke.js';
import { clientFinishLogin, clientFinishRegistration, clientStartLogin, clientStartRegistration } from '../src/crypto/opaque.js';
import { channelInfo, requestAad, type RequestEnvelope } from '../src/protocol/channel.js';
import type { ErrorCode } from '../src/protocol/errors.js';
import { accountTag, routingHint } from '../src/protocol/ids.js';
import { LABEL, PROTOCOL_VERSION, SUBKEY } from '../src/protocol/labels.js';
import { decodeResponse, encodeRequest, type VaultRequest, type VaultResponse } from '../src/protocol/messages.js';
import { sessionOpMacInput, sessionPayloadDigest, transportAd, wrapAd } from '../src/protocol/session.js';
import type { Rng } from './rng.js';

export interface FleetView {
  fleetId: Uint8Array;
  hpke: Uint8Array;
}

/** One sealed request, the way the untrusted parts see it, and the means to open its answer. */
export interface SealedCall {
  id: number;
  /** Hex of the HPKE enc: names the envelope wherever it travels or is replayed. */
  key: string;
  request: VaultRequest;
  env: RequestEnvelope;
  /** Opens an answer sealed to this request; throws if it does not open. */
  open(body: Uint8Array): VaultResponse;
}

const EMPTY = new Uint8Array(0);

export class Sealer {
  private next = 1;
  readonly calls = new Map<string, SealedCall>();

  constructor(
    private readonly fleet: FleetView,
    private readonly rng: Rng,
  ) {}

  seal(request: VaultRequest): SealedCall {
    const head = { version: PROTOCOL_VERSION, type: request.type, hint: routingHint(request.userId), tag: accountTag(request.userId) };
    const sender = setupBaseSenderSync(this.fleet.hpke, channelInfo(this.fleet.fleetId), this.rng.bytes(32));
    const ciphertext = sender.seal(requestAad(head), encodeRequest(request));
    const secret = sender.export(RESPONSE_EXPORT_LABEL, RESPONSE_NONCE_LENGTH);
    const enc = sender.enc;
    const env: RequestEnvelope = { ...head, enc, ciphertext };
    const call: SealedCall = {
      id: this.next++,
      key: toHex(enc),
      request,
      env,
      open(body: Uint8Array): VaultResponse {
        // RFC 9458 section 4.4: key and nonce from HKDF(salt = enc || response nonce, ikm = secret).
        const nonce = body.subarray(0, RESPONSE_NONCE_LENGTH);
        const salt = concatBytes(enc, nonce);
        const key = hkdf(secret, salt, utf8('key'), 32);
        const iv = hkdf(secret, salt, utf8('nonce'), 12);
        const pt = aesGcmOpen(key, iv, body.subarray(RESPONSE_NONCE_LENGTH), EMPTY);
        if (!pt) throw new Error('the response does not open under this request');
        return decodeResponse(pt);
      },
    };
    this.calls.set(call.key, call);
    return call;
  }
}

/** What a client learns from one call: a sealed answer, or an error from the untrusted path. */
export type Reply = { kind: 'response'; res: VaultResponse; body: Uint8Array } | { kind: 'error'; code: ErrorCode | 'Timeout' };

export type FlowKind = 'register' | 'recover' | 'wrong' | 'flood' | 'status' | 'delete' | 'probe';

export interface User {
  userId: string;
  password: string;
  /** Every backup key this user ever deposited, by hex. */
  keys: Set<string>;
  /** What the clients last learnt: is a record registered? (Steers the workload, checks nothing.) */
  registered: boolean;
}

interface Step {
  call: SealedCall;
  deadline: number;
  onOk(res: VaultResponse): void;
}

/** The client side of the model: what users were told, reported to the checker. */
export interface ClientObserver {
  told(user: User, call: SealedCall, reply: Reply): void;
  violation(check: string, message: string): void;
}

export class Flow {
  done = false;
  /** Requests of this flow in flight, by call key. */
  readonly inFlight = new Map<string, Step>();
  retries = 0;
  /** Set when this flow received a sealed success for its purpose. */
  succeeded = false;

  constructor(
    readonly id: number,
    readonly kind: FlowKind,
    readonly user: User,
  ) {}
}

export interface ClientHost {
  now(): number;
  /** Sends a request through the front end to whichever member leads. */
  send(call: SealedCall, flow: Flow): void;
}

const FAST = 'insecure-fast-for-tests-only' as const;
const RETRYABLE = new Set<string>(['NotLeader', 'Unavailable', 'Halted', 'StaleProof']);
const CALL_TIMEOUT_MS = 2000;

export class Clients {
  readonly users: User[];
  readonly flows: Flow[] = [];
  private nextFlow = 1;

  constructor(
    private readonly fleet: FleetView,
    private readonly sealer: Sealer,
    private readonly rng: Rng,
    private readonly host: ClientHost,
    private readonly obs: ClientObserver,
    userCount: number,
  ) {
    this.users = Array.from({ length: userCount }, (_, i) => ({ userId: Clients.userId(i), password: `correct horse ${i}`, keys: new Set<string>(), registered: false }));
  }

  static userId(i: number): string {
    return `sim-user-${i}`;
  }

  get active(): Flow[] {
    return this.flows.filter((f) => !f.done);
  }

  private ids(userId: string): { client: string; server: string } {
    return { client: userId, server: toHex(this.fleet.fleetId) };
  }

  start(kind: FlowKind, user: User = this.rng.pick(this.users)): Flow {
    const flow = new Flow(this.nextFlow++, kind, user);
    for (let i = 0; i < this.flows.length && this.flows.length >= 64; ) {
      if (this.flows[i]!.done) this.flows.splice(i, 1);
      else i++;
    }
    this.flows.push(flow);
    switch (kind) {
      case 'register':
        this.register(flow);
        break;
      case 'recover':
      case 'delete':
        this.recover(flow, user.password);
        break;
      case 'wrong':
        this.recover(flow, `${user.password} (wrong)`);
        break;
      case 'flood': {
        // KE1s that are never finished: each is a guess the HSM must count (I1).
        const n = this.rng.int(2, 6);
        for (let i = 0; i < n; i++) this.recover(flow, this.rng.chance(0.5) ? user.password : 'flood guess', true);
        break;
      }
      case 'status':
      case 'probe':
        this.status(flow);
        break;
    }
    return flow;
  }

  private send(flow: Flow, request: VaultRequest, onOk: (res: VaultResponse) => void): void {
    const call = this.sealer.seal(request);
    flow.inFlight.set(call.key, { call, deadline: this.host.now() + CALL_TIMEOUT_MS, onOk });
    this.host.send(call, flow);
  }

  private register(flow: Flow): void {
    const u = flow.user;
    const reg = clientStartRegistration(u.password);
    this.send(flow, { type: 'RegisterStart', userId: u.userId, registrationRequest: reg.request }, (res) => {
      if (res.type !== 'RegisterStart' || res.outcome !== 'Ok') return;
      const fin = clientFinishRegistration(u.password, reg.state, res.registrationResponse, this.ids(u.userId), FAST);
      const key = this.rng.bytes(32);
      u.keys.add(toHex(key));
      const wrapKey = hkdf(fin.exportKey, EMPTY, utf8(LABEL.wrap), 32);
      const nonce = this.rng.bytes(12);
      const wrappedKey = concatBytes(nonce, aesGcmSeal(wrapKey, nonce, key, wrapAd(this.fleet.fleetId, u.userId)));
      const maxGuesses = this.rng.int(1, 4);
      this.send(flow, { type: 'RegisterFinish', userId: u.userId, registrationRecord: fin.record, wrappedKey, maxGuesses, state: res.state }, (done) => {
        if (done.type === 'RegisterFinish' && done.outcome === 'Ok') flow.succeeded = true;
      });
    });
  }

  private recover(flow: Flow, password: string, noKe3 = false): void {
    const u = flow.user;
    const start = clientStartLogin(password);
    this.send(flow, { type: 'RecoverStart', userId: u.userId, ke1: start.ke1 }, (res) => {
      if (res.type !== 'RecoverStart' || res.outcome !== 'Ok' || noKe3) return;
      const fin = clientFinishLogin(password, start.state, res.ke2, this.ids(u.userId), FAST);
      if (!fin) {
        // I4/I5: the only records for this user were registered with its one password.
        if (password === u.password) this.obs.violation('I5', `${u.userId}: a KE2 released for the right password does not verify (a record that is not the user's)`);
        return;
      }
      if (password !== u.password) {
        this.obs.violation('I1', `${u.userId}: a wrong password verified`);
        return;
      }
      this.send(flow, { type: 'RecoverFinish', userId: u.userId, ke3: fin.ke3, state: res.state }, (done) => {
        if (done.type !== 'RecoverFinish' || done.outcome !== 'Ok') return;
        const transportKey = hkdf(fin.sessionKey, EMPTY, utf8(LABEL.transport), 32);
        const w = aesGcmOpen(transportKey, done.sealedWrappedKey.subarray(0, 12), done.sealedWrappedKey.subarray(12), transportAd(this.fleet.fleetId, u.userId, done.generation, done.attempt));
        const wrapKey = hkdf(fin.exportKey, EMPTY, utf8(LABEL.wrap), 32);
        const key = w && w.length > 12 ? aesGcmOpen(wrapKey, w.subarray(0, 12), w.subarray(12), wrapAd(this.fleet.fleetId, u.userId)) : null;
        if (!key || !u.keys.has(toHex(key))) {
          this.obs.violation('I4', `${u.userId}: recovery returned a key this user never deposited`);
          return;
        }
        flow.succeeded = true;
        if (flow.kind !== 'delete') return;
        const opKey = hkdf(fin.sessionKey, EMPTY, utf8(SUBKEY.sessionOp), 32);
        const req = { type: 'Delete' as const, userId: u.userId, auth: { token: done.sessionToken, mac: new Uint8Array(32) as Uint8Array } };
        req.auth.mac = hmacSha256(opKey, sessionOpMacInput('Delete', this.fleet.fleetId, u.userId, done.generation, done.attempt, sessionPayloadDigest(req)));
        this.send(flow, req, () => undefined);
      });
    });
  }

  private status(flow: Flow): void {
    const nonce = this.rng.bytes(16);
    this.send(flow, { type: 'Status', userId: flow.user.userId, nonce }, (res) => {
      if (res.type !== 'Status' || res.outcome !== 'Ok') return;
      if (!bytesEqual(res.nonce, nonce) || !bytesEqual(res.fleetId, this.fleet.fleetId)) this.obs.violation('I5', `${flow.user.userId}: a status answer for another request or fleet`);
      else flow.succeeded = true;
    });
  }

  /** An answer (or a transport error) for a call of `flow` reached the client. */
  onReply(flow: Flow, callKey: string, reply: Reply): void {
    const step = flow.inFlight.get(callKey);
    if (!step) return; // a duplicate, or an answer after the client gave up
    flow.inFlight.delete(callKey);
    this.obs.told(flow.user, step.call, reply);
    if (reply.kind === 'response') {
      const r = reply.res;
      if ((r.type === 'RegisterFinish' && r.outcome === 'Ok') || (r.outcome === 'Error' && r.code === 'AlreadyRegistered')) flow.user.registered = true;
      if ((r.type === 'Delete' && r.outcome === 'Ok') || (r.outcome === 'Error' && (r.code === 'Locked' || r.code === 'NotRegistered'))) flow.user.registered = false;
      if (reply.res.outcome === 'Ok') step.onOk(reply.res);
    } else if (RETRYABLE.has(reply.code) && flow.retries < 4) {
      // The request reached no leader (or it stopped leading before applying it): send it again,
      // sealed afresh, as the SDK's caller would.
      flow.retries++;
      this.send(flow, step.call.request, step.onOk);
    }
    if (flow.inFlight.size === 0) flow.done = true;
  }

  /** Calls whose answer never came: the client gives up on them (a guess may be spent). */
  expire(): void {
    const now = this.host.now();
    for (const flow of this.flows) {
      if (flow.done) continue;
      for (const [key, step] of flow.inFlight) if (step.deadline <= now) this.onReply(flow, key, { kind: 'error', code: 'Timeout' });
    }
  }
}
