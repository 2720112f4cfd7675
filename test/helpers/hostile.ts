/**
 * Tools for hostile tests (test/invariants).
 *
 * RawClient speaks the vault protocol message by message, so a test can keep every envelope and
 * every inner request, replay them, splice sealed states between users, or stop half-way (KE1
 * without KE3). It keeps the HPKE context of each request so the answer to a replay of the very
 * same envelope can still be opened and inspected.
 *
 * CoreRig drives an HSM core directly, as a hostile agent would: it owns the core, its software
 * platform directory and a real SQLite storage file, and exposes each step of the commit path
 * (open, apply, close, write, capture, persist, statement, commit) separately.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sealRequest } from '../../src/crypto/hpke.js';
import { toHex, utf8 } from '../../src/crypto/bytes.js';
import { clientFinishLogin, clientFinishRegistration, clientStartLogin, clientStartRegistration, opaqueReady } from '../../src/crypto/opaque.js';
import { aesGcmOpen, aesGcmSeal, hkdf, hmacSha256, randomBytes } from '../../src/client/webcrypto.js';
import type { TransportReply } from '../../src/client/transport.js';
import { channelInfo, requestAad, type RequestEnvelope } from '../../src/protocol/channel.js';
import { accountTag, routingHint } from '../../src/protocol/ids.js';
import { LABEL, PROTOCOL_VERSION, SUBKEY } from '../../src/protocol/labels.js';
import { decodeResponse, encodeRequest, type VaultRequest, type VaultResponse } from '../../src/protocol/messages.js';
import { sessionOpMacInput, sessionPayloadDigest, transportAd, wrapAd, type SessionOperation } from '../../src/protocol/session.js';
import { fleetIdOf, makeTrustFile, parseTrustFile, type PinnedFleet } from '../../src/protocol/fleet.js';
import type { Agent } from '../../src/agent/agent.js';
import type { Certificate, Statement } from '../../src/protocol/log.js';
import { HsmCore, type ReleasedResponse } from '../../src/hsm/core.js';
import type { FleetPolicy } from '../../src/hsm/keys.js';
import type { TreeTop } from '../../src/hsm/tree.js';
import { softwarePlatform } from '../../src/softhsm/platform.js';
import { EPOCH_STATE_ID } from '../../src/hsm/epoch.js';
import { SqliteStorage } from '../../src/storage/sqlite.js';
import { collectPath } from '../../src/agent/proof.js';

export type Send = (env: RequestEnvelope) => Promise<TransportReply>;

/** The fleet a client pins for this agent's HSM (what startSystem's vault() pins). */
export function pinnedFleetOf(agent: Agent): PinnedFleet {
  return parseTrustFile(makeTrustFile(agent.publicKeys(), agent.fleetConfig().routes));
}

/** One sealed request: the envelope the untrusted parts see, and the means to open its answer. */
export interface SealedCall<T extends VaultRequest = VaultRequest> {
  request: T;
  env: RequestEnvelope;
  open(body: Uint8Array): Promise<VaultResponse>;
}

/** What came back: a sealed answer (opened) or an error from the untrusted path. */
export type Reply = { kind: 'response'; res: VaultResponse } | { kind: 'transport'; code: string };

type Ok<T extends VaultResponse['type']> = Extract<VaultResponse, { type: T; outcome: 'Ok' }>;

/** The outcome of a reply in one word: 'Ok', the sealed error code, or 'transport:<code>'. */
export function outcomeOf(r: Reply): string {
  if (r.kind === 'transport') return `transport:${r.code}`;
  return r.res.outcome === 'Ok' ? 'Ok' : r.res.code;
}

export function expectOk<T extends VaultResponse['type']>(r: Reply, type: T): Ok<T> {
  if (r.kind !== 'response') throw new Error(`expected a sealed ${type} answer, got transport error ${r.code}`);
  if (r.res.type !== type) throw new Error(`expected a ${type} answer, got ${r.res.type}`);
  if (r.res.outcome !== 'Ok') throw new Error(`expected ${type} Ok, got ${r.res.code}`);
  return r.res as Ok<T>;
}

export async function sealFor<T extends VaultRequest>(fleet: PinnedFleet, request: T): Promise<SealedCall<T>> {
  const head = { version: PROTOCOL_VERSION, type: request.type, hint: routingHint(request.userId), tag: accountTag(request.userId) };
  const sealed = await sealRequest(fleet.keys.hpke, channelInfo(fleet.fleetId), requestAad(head), encodeRequest(request));
  return {
    request,
    env: { ...head, enc: sealed.enc, ciphertext: sealed.ciphertext },
    open: async (body) => decodeResponse(await sealed.openResponse(body)),
  };
}

export interface Registration {
  key: Uint8Array;
  wrappedKey: Uint8Array;
  registrationRecord: Uint8Array;
  start: SealedCall<Extract<VaultRequest, { type: 'RegisterStart' }>>;
  finish: SealedCall<Extract<VaultRequest, { type: 'RegisterFinish' }>>;
  generation: number;
}

export interface LoginStart {
  call: SealedCall<Extract<VaultRequest, { type: 'RecoverStart' }>>;
  clientState: string;
  reply: Reply;
}

export interface Session {
  userId: string;
  sessionKey: Uint8Array;
  exportKey: Uint8Array;
  token: Uint8Array;
  generation: number;
  attempt: number;
  wrappedKey: Uint8Array;
  ke1: LoginStart;
  finish: SealedCall<Extract<VaultRequest, { type: 'RecoverFinish' }>>;
}

/** A client that speaks the protocol one message at a time and keeps everything it sent. */
export class RawClient {
  readonly sent: SealedCall[] = [];

  constructor(
    readonly fleet: PinnedFleet,
    private readonly send: Send,
  ) {}

  ids(userId: string): { client: string; server: string } {
    return { client: userId, server: toHex(this.fleet.fleetId) };
  }

  seal<T extends VaultRequest>(request: T): Promise<SealedCall<T>> {
    return sealFor(this.fleet, request);
  }

  /** Sends a sealed call (again, if it was sent before) and opens the answer. */
  async deliver(call: SealedCall): Promise<Reply> {
    this.sent.push(call);
    const r = await this.send(call.env);
    if (r.type === 'Error') return { kind: 'transport', code: r.code };
    return { kind: 'response', res: await call.open(r.body) };
  }

  async call(request: VaultRequest): Promise<{ call: SealedCall; reply: Reply }> {
    const call = await this.seal(request);
    return { call, reply: await this.deliver(call) };
  }

  async status(userId: string): Promise<Ok<'Status'>> {
    const { reply } = await this.call({ type: 'Status', userId, nonce: randomBytes(16) });
    return expectOk(reply, 'Status');
  }

  /** Runs RegisterStart and RegisterFinish; throws unless both succeed. */
  async register(userId: string, password: string, maxGuesses: number, key: Uint8Array = randomBytes(32)): Promise<Registration> {
    await opaqueReady;
    const reg = clientStartRegistration(password);
    const start = await this.seal({ type: 'RegisterStart' as const, userId, registrationRequest: reg.request });
    const started = expectOk(await this.deliver(start), 'RegisterStart');
    const fin = clientFinishRegistration(password, reg.state, started.registrationResponse, this.ids(userId), 'insecure-fast-for-tests-only');
    const wrapKey = await hkdf(fin.exportKey, utf8(LABEL.wrap), 32);
    const wrappedKey = await aesGcmSeal(wrapKey, key, wrapAd(this.fleet.fleetId, userId));
    const finish = await this.seal({ type: 'RegisterFinish' as const, userId, registrationRecord: fin.record, wrappedKey, maxGuesses, state: started.state });
    const done = expectOk(await this.deliver(finish), 'RegisterFinish');
    return { key, wrappedKey, registrationRecord: fin.record, start, finish, generation: done.generation };
  }

  /** Sends a KE1 (one guess) and stops there. */
  async ke1(userId: string, password: string): Promise<LoginStart> {
    await opaqueReady;
    const s = clientStartLogin(password);
    const call = await this.seal({ type: 'RecoverStart' as const, userId, ke1: s.ke1 });
    return { call, clientState: s.state, reply: await this.deliver(call) };
  }

  /** Builds the KE3 for a KE2 (null when the password is wrong), without sending it. */
  async ke3(userId: string, password: string, start: LoginStart): Promise<{ call: SealedCall<Extract<VaultRequest, { type: 'RecoverFinish' }>>; sessionKey: Uint8Array; exportKey: Uint8Array } | null> {
    const ke2 = expectOk(start.reply, 'RecoverStart');
    const fin = clientFinishLogin(password, start.clientState, ke2.ke2, this.ids(userId), 'insecure-fast-for-tests-only');
    if (!fin) return null;
    const call = await this.seal({ type: 'RecoverFinish' as const, userId, ke3: fin.ke3, state: ke2.state });
    return { call, sessionKey: fin.sessionKey, exportKey: fin.exportKey };
  }

  /** A full successful login; throws otherwise. */
  async login(userId: string, password: string): Promise<Session> {
    const start = await this.ke1(userId, password);
    const k = await this.ke3(userId, password, start);
    if (!k) throw new Error('login: wrong password');
    const done = expectOk(await this.deliver(k.call), 'RecoverFinish');
    const wrappedKey = await this.openSealedW(k.sessionKey, userId, done);
    if (!wrappedKey) throw new Error('login: W does not open under the session');
    return { userId, sessionKey: k.sessionKey, exportKey: k.exportKey, token: done.sessionToken, generation: done.generation, attempt: done.attempt, wrappedKey, ke1: start, finish: k.call };
  }

  async openSealedW(sessionKey: Uint8Array, userId: string, done: Ok<'RecoverFinish'>): Promise<Uint8Array | null> {
    const transportKey = await hkdf(sessionKey, utf8(LABEL.transport), 32);
    return aesGcmOpen(transportKey, done.sealedWrappedKey, transportAd(this.fleet.fleetId, userId, done.generation, done.attempt));
  }

  /** K from W and an export key, or null when it does not open. */
  async unwrap(exportKey: Uint8Array, userId: string, wrappedKey: Uint8Array): Promise<Uint8Array | null> {
    const wrapKey = await hkdf(exportKey, utf8(LABEL.wrap), 32);
    return aesGcmOpen(wrapKey, wrappedKey, wrapAd(this.fleet.fleetId, userId));
  }

  /** Seals a session operation with its MAC under the session (not sent). */
  async sessionOp<T extends Extract<VaultRequest, { type: SessionOperation }>>(s: Session, req: T): Promise<SealedCall<T>> {
    const opKey = await hkdf(s.sessionKey, utf8(SUBKEY.sessionOp), 32);
    const mac = await hmacSha256(opKey, sessionOpMacInput(req.type, this.fleet.fleetId, s.userId, s.generation, s.attempt, sessionPayloadDigest(req)));
    return this.seal({ ...req, auth: { token: s.token, mac } });
  }

  /** Change password inside a session; returns the sealed calls it sent. */
  async changePassword(s: Session, newPassword: string, maxGuesses: number): Promise<{ start: SealedCall; finish: SealedCall; generation: number }> {
    const key = await this.unwrap(s.exportKey, s.userId, s.wrappedKey);
    if (!key) throw new Error('changePassword: W does not unwrap');
    const reg = clientStartRegistration(newPassword);
    const start = await this.sessionOp(s, { type: 'ChangePasswordStart' as const, userId: s.userId, auth: { token: s.token, mac: new Uint8Array(32) }, registrationRequest: reg.request });
    const started = expectOk(await this.deliver(start), 'ChangePasswordStart');
    const fin = clientFinishRegistration(newPassword, reg.state, started.registrationResponse, this.ids(s.userId), 'insecure-fast-for-tests-only');
    const wrapKey = await hkdf(fin.exportKey, utf8(LABEL.wrap), 32);
    const wrappedKey = await aesGcmSeal(wrapKey, key, wrapAd(this.fleet.fleetId, s.userId));
    const finish = await this.sessionOp(s, { type: 'ChangePasswordFinish' as const, userId: s.userId, auth: { token: s.token, mac: new Uint8Array(32) }, registrationRecord: fin.record, wrappedKey, maxGuesses, state: started.state });
    const done = expectOk(await this.deliver(finish), 'ChangePasswordFinish');
    return { start, finish, generation: done.generation };
  }

  /** Delete inside a session; returns the sealed call it sent. */
  async delete(s: Session): Promise<SealedCall> {
    const call = await this.sessionOp(s, { type: 'Delete' as const, userId: s.userId, auth: { token: s.token, mac: new Uint8Array(32) } });
    expectOk(await this.deliver(call), 'Delete');
    return call;
  }
}

/** Flips one bit of a copy. */
export function flipBit(b: Uint8Array, at: number): Uint8Array {
  const c = Uint8Array.from(b);
  c[at] = c[at]! ^ 0x01;
  return c;
}

// ---------------------------------------------------------------------------------------------
// A hostile agent: the core, driven step by step

export interface RigOptions {
  policy?: Partial<FleetPolicy>;
  /** Extra member ids besides this HSM's own (a fleet this HSM cannot commit alone). */
  extraMembers?: Uint8Array[];
  dir?: string;
}

export interface Proposal {
  entry: Uint8Array;
  index: number;
  top: TreeTop;
  added: { hash: Uint8Array; node: Uint8Array }[];
  removed: Uint8Array[];
}

/**
 * One HSM core on a software platform in `dir/hsm-0`, with a real SQLite file at
 * `dir/vault.sqlite` (the layout of test/helpers/system.ts, so a real agent can take over).
 */
export class CoreRig {
  top: TreeTop = null;
  /** Other members' cores (fleets of more than one): the honest path collects their statements. */
  followers: HsmCore[] = [];

  private constructor(
    readonly dir: string,
    public core: HsmCore,
    readonly storage: SqliteStorage,
    readonly fleet: PinnedFleet,
  ) {}

  static async create(opts: RigOptions = {}): Promise<CoreRig> {
    await opaqueReady;
    const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'bkv-hostile-'));
    const core = HsmCore.boot(softwarePlatform(join(dir, 'hsm-0')));
    const members = opts.extraMembers ? [core.memberId, ...opts.extraMembers] : undefined;
    const created = core.createFleet({ policy: { persistIntervalMs: 0, ...opts.policy }, ...(members ? { members } : {}) });
    if (created.type !== 'Created') throw new Error('createFleet failed');
    const storage = new SqliteStorage(join(dir, 'vault.sqlite'));
    const appended = await storage.appendEntry({ index: 0, entry: created.genesis, top: null }, [], []);
    if (appended.type !== 'Appended') throw new Error('genesis append failed');
    const fleet: PinnedFleet = { fleetId: fleetIdOf(created.publicKeys), keys: created.publicKeys, routes: core.fleetConfig()!.routes };
    const rig = new CoreRig(dir, core, storage, fleet);
    const cap = core.captureNext([created.genesis]);
    if (cap.type !== 'Ok') throw new Error(`genesis capture: ${cap.type}`);
    rig.mustPersist();
    const led = core.becomeLeader(null);
    if (led.type !== 'Ok') throw new Error(`becomeLeader: ${led.type}`);
    return rig;
  }

  /** Boots a new core on the same platform directory (a crash and restart of the HSM). */
  reboot(): HsmCore {
    this.core = HsmCore.boot(softwarePlatform(join(this.dir, 'hsm-0')));
    return this.core;
  }

  mustPersist(): void {
    const p = this.core.persist();
    if (p.type !== 'Persisted' && p.type !== 'Unchanged') throw new Error(`persist: ${p.type}`);
  }

  ownStatement(): Statement {
    const s = this.core.statement();
    if (s.type !== 'Ok') throw new Error('no statement');
    return s.statement;
  }

  /** Shows a follower every entry storage holds past its position, and persists it. */
  async catchUpFollower(f: HsmCore): Promise<void> {
    const st = f.status();
    const from = st.captured ? st.captured.index + 1 : st.awaiting!.index;
    const rows = await this.storage.readEntries(from, 256);
    if (rows.length > 0) {
      const c = f.captureNext(rows.map((r) => r.entry));
      if (c.type !== 'Ok') throw new Error(`follower capture: ${c.type}`);
    }
    const p = f.persist();
    if (p.type !== 'Persisted' && p.type !== 'Unchanged') throw new Error(`follower persist: ${p.type}`);
  }

  /** This member's statement and every follower's, after the followers caught up with storage. */
  async certify(): Promise<Certificate> {
    const cert = [this.ownStatement()];
    for (const f of this.followers) {
      await this.catchUpFollower(f);
      const s = f.statement();
      if (s.type !== 'Ok') throw new Error('follower statement');
      cert.push(s.statement);
    }
    return cert;
  }

  /** Boots another HSM and has it join this fleet (it must be one of the members). */
  async join(core: HsmCore): Promise<void> {
    const w = this.core.exportFleet(core.identity());
    if (w.type !== 'Wrapped') throw new Error(`exportFleet: ${w.type}`);
    const genesis = (await this.storage.readEntries(0, 1))[0]!.entry;
    const j = core.joinFleet(w.blob, genesis);
    if (j.type !== 'Joined') throw new Error(`joinFleet: ${j.type}`);
    this.followers.push(core);
    await this.catchUpFollower(core);
  }

  /** openRequest + applyRequest with the record's path from storage; returns the handle. */
  async apply(env: RequestEnvelope): Promise<number> {
    const o = this.core.openRequest(env);
    if (o.type !== 'Opened') throw new Error(`openRequest refused: ${o.code} ${o.message}`);
    const nodes = await collectPath(this.storage, this.top, o.recordId);
    // The epoch accounting leaf's path, which closeBatch needs when the batch writes a leaf.
    this.epochNodes = await collectPath(this.storage, this.top, EPOCH_STATE_ID);
    const a = this.core.applyRequest(o.handle, nodes);
    if (a.type !== 'Applied') throw new Error(`applyRequest: ${a.type}`);
    return o.handle;
  }

  private epochNodes: Uint8Array[] = [];

  propose(): Proposal {
    const p = this.core.closeBatch(this.epochNodes);
    if (p.type !== 'Proposed') throw new Error(`closeBatch: ${p.type}`);
    return p;
  }

  async write(p: Proposal): Promise<void> {
    const r = await this.storage.appendEntry({ index: p.index, entry: p.entry, top: p.top }, p.added, p.removed);
    if (r.type !== 'Appended') throw new Error('append: index taken');
    this.top = p.top;
    this.epochNodes = await collectPath(this.storage, this.top, EPOCH_STATE_ID);
  }

  async captureFromStorage(index: number): Promise<void> {
    const rows = await this.storage.readEntries(index, 1);
    const c = this.core.captureNext(rows.map((r) => r.entry));
    if (c.type !== 'Ok') throw new Error(`capture: ${c.type}`);
  }

  /** The honest path for a set of requests: apply, close, write, capture, persist, certify, commit. */
  async roundTrip(calls: SealedCall[]): Promise<VaultResponse[]> {
    const handles: number[] = [];
    for (const c of calls) handles.push(await this.apply(c.env));
    const p = this.propose();
    await this.write(p);
    await this.captureFromStorage(p.index);
    this.mustPersist();
    const c = this.core.commit(await this.certify());
    if (c.type !== 'Committed') throw new Error(`commit: ${c.type}`);
    return Promise.all(calls.map(async (call, i) => {
      const r = c.released.find((x) => x.handle === handles[i]);
      if (!r || r.response.type !== 'Sealed') throw new Error('response not released');
      return call.open(r.response.body);
    }));
  }

  /** A RawClient whose transport is this rig's honest path, one request per batch. */
  client(): RawClient {
    return new RawClient(this.fleet, async (env) => {
      const handle = await this.apply(env);
      const p = this.propose();
      await this.write(p);
      await this.captureFromStorage(p.index);
      this.mustPersist();
      const c = this.core.commit(await this.certify());
      if (c.type !== 'Committed') throw new Error(`commit: ${c.type}`);
      const r = c.released.find((x) => x.handle === handle);
      if (!r || r.response.type !== 'Sealed') return { type: 'Error', code: 'OutcomeUnknown', message: 'not released' };
      return { type: 'Sealed', body: r.response.body };
    });
  }

  async close(): Promise<void> {
    await this.storage.close();
  }
}

/** Opens every released body with `call` and returns those that open (i.e. answer that call). */
export async function answersTo(call: SealedCall, released: ReleasedResponse[]): Promise<VaultResponse[]> {
  const out: VaultResponse[] = [];
  for (const r of released) {
    if (r.response.type !== 'Sealed') continue;
    try {
      out.push(await call.open(r.response.body));
    } catch {
      // sealed to another request
    }
  }
  return out;
}

export type { Certificate, Statement };
