/**
 * The in-process system (test/helpers/system.ts) behind real sockets: the agent's HTTP server and
 * a front end, both on 127.0.0.1 with ephemeral ports, and a raw client that seals requests the
 * way the SDK does (src/client/vault.ts `call`) but lets a test change any part of the envelope,
 * keep it for replay, and open the sealed answer.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { Agent } from '../../src/agent/agent.js';
import { SqliteStorage } from '../../src/storage/sqlite.js';
import { softwarePlatform } from '../../src/softhsm/platform.js';
import type { RouteRange } from '../../src/protocol/ids.js';
import { buildAgentServer } from '../../src/agent/server.js';
import { buildFrontend } from '../../src/frontend/server.js';
import { openSessions, type SessionVerifier } from '../../src/frontend/auth.js';
import { httpTransport } from '../../src/client/transport.js';
import { Vault } from '../../src/client/vault.js';
import { sealRequest } from '../../src/crypto/hpke.js';
import { toHex, utf8 } from '../../src/crypto/bytes.js';
import { clientFinishLogin, clientFinishRegistration, clientStartLogin, clientStartRegistration, opaqueReady } from '../../src/crypto/opaque.js';
import { channelInfo, requestAad, type RequestEnvelope } from '../../src/protocol/channel.js';
import { envelopeToJson, type EnvelopeJson } from '../../src/protocol/http.js';
import { accountTag, routingHint } from '../../src/protocol/ids.js';
import { LABEL, PROTOCOL_VERSION, SUBKEY } from '../../src/protocol/labels.js';
import { decodeResponse, encodeRequest, type MessageType, type VaultRequest, type VaultResponse } from '../../src/protocol/messages.js';
import { makeTrustFile, parseTrustFile, type PinnedFleet } from '../../src/protocol/fleet.js';
import { sessionOpMacInput, sessionPayloadDigest, wrapAd, type SessionOperation } from '../../src/protocol/session.js';
import { fromBase64 } from '../../src/crypto/bytes.js';
import { aesGcmSeal, hkdf, hmacSha256 } from '../../src/client/webcrypto.js';
import { startSystem, type InProcessSystem } from './system.js';
import type { FleetPolicy } from '../../src/hsm/keys.js';

export interface HttpReply {
  status: number;
  /** Parsed JSON body, or undefined when the body is not JSON. */
  json: unknown;
  text: string;
  contentType: string | null;
}

export interface HttpSystem {
  sys: InProcessSystem;
  fleet: PinnedFleet;
  agentUrl: string;
  frontUrl: string;
  /** POSTs a raw body to the front end's /v1/request (or another path). */
  post(body: string | Uint8Array, opts?: { contentType?: string | null; headers?: Record<string, string>; url?: string }): Promise<HttpReply>;
  get(path: string, base?: string): Promise<HttpReply>;
  /** The SDK over HTTP through the front end. */
  vault(sessionToken?: () => string | undefined): Vault;
  /** The log's latest index in storage. */
  logIndex(): Promise<number>;
  close(): Promise<void>;
}

export interface HttpSystemOptions {
  sessions?: SessionVerifier;
  ke1PerTagPerDay?: number;
  policy?: Partial<FleetPolicy>;
  /** Route ranges of the fleet (default: all). */
  routes?: RouteRange[];
}

/** startSystem, with the fleet's route ranges chosen (test/helpers/system.ts always serves all). */
async function startRoutedSystem(policy: Partial<FleetPolicy> | undefined, routes: RouteRange[]): Promise<InProcessSystem> {
  const dir = mkdtempSync(join(tmpdir(), 'bkv-test-'));
  const storage = new SqliteStorage(join(dir, 'vault.sqlite'));
  const agent = await Agent.start({ platform: softwarePlatform(join(dir, 'hsm-0')), storage, log: pino({ level: 'silent' }), createFleet: { policy: policy ?? {}, routes } });
  const fleet = parseTrustFile(makeTrustFile(agent.publicKeys(), agent.fleetConfig().routes));
  const seen = { envelopes: [] as RequestEnvelope[], replies: [] as Uint8Array[] };
  return {
    dir,
    agent,
    storage,
    seen,
    fleet,
    transport: { send: (env) => agent.submit(env) },
    vault: () => new Vault({ fleet, transport: { send: (env) => agent.submit(env) }, keyStretching: 'insecure-fast-for-tests-only' }),
    async close() {
      await agent.close();
      await storage.close();
    },
  };
}

async function reply(res: Response): Promise<HttpReply> {
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text, contentType: res.headers.get('content-type') };
}

export async function startHttpSystem(opts: HttpSystemOptions = {}): Promise<HttpSystem> {
  const sys = opts.routes ? await startRoutedSystem(opts.policy, opts.routes) : await startSystem({ policy: opts.policy });
  const log = pino({ level: 'silent' });
  const agentApp = buildAgentServer(sys.agent, log);
  const agentUrl = await agentApp.listen({ host: '127.0.0.1', port: 0 });
  const front = buildFrontend({ agents: [agentUrl], sessions: opts.sessions ?? openSessions, ke1PerTagPerDay: opts.ke1PerTagPerDay ?? 1_000_000, log, agentTimeoutMs: 10_000 });
  const frontUrl = await front.listen({ host: '127.0.0.1', port: 0 });
  const fleet = parseTrustFile(makeTrustFile(sys.agent.publicKeys(), sys.agent.fleetConfig().routes));
  return {
    sys,
    fleet,
    agentUrl,
    frontUrl,
    async post(body, o = {}) {
      const headers: Record<string, string> = { ...(o.headers ?? {}) };
      if (o.contentType !== null) headers['content-type'] = o.contentType ?? 'application/json';
      const res = await fetch(o.url ?? `${frontUrl}/v1/request`, { method: 'POST', headers, body: typeof body === 'string' ? body : Buffer.from(body), signal: AbortSignal.timeout(15_000) });
      return reply(res);
    },
    async get(path, base = frontUrl) {
      return reply(await fetch(`${base}${path}`, { signal: AbortSignal.timeout(15_000) }));
    },
    vault(sessionToken) {
      return new Vault({ fleet, transport: httpTransport({ server: frontUrl, sessionToken }), keyStretching: 'insecure-fast-for-tests-only' });
    },
    async logIndex() {
      return (await sys.storage.latestEntry())!.index;
    },
    async close() {
      await front.close();
      await agentApp.close();
      await sys.close();
    },
  };
}

/** A request sealed to the fleet, kept so that a test can alter it, send it again and open the answers. */
export interface SealedCall {
  env: RequestEnvelope;
  json: EnvelopeJson;
  open(ct: Uint8Array): Promise<VaultResponse>;
}

export interface SealOverrides {
  version?: number;
  type?: MessageType;
  hint?: Uint8Array;
  tag?: Uint8Array;
  /** Inner plaintext instead of encodeRequest(req). */
  plaintext?: Uint8Array;
}

/** Seals like Vault.call, with any envelope field (and the AAD built from it) overridden. */
export async function sealCall(fleet: PinnedFleet, req: VaultRequest, o: SealOverrides = {}): Promise<SealedCall> {
  const head = { version: o.version ?? PROTOCOL_VERSION, type: o.type ?? req.type, hint: o.hint ?? routingHint(req.userId), tag: o.tag ?? accountTag(req.userId) };
  const sealed = await sealRequest(fleet.keys.hpke, channelInfo(fleet.fleetId), requestAad(head), o.plaintext ?? encodeRequest(req));
  const env: RequestEnvelope = { ...head, enc: sealed.enc, ciphertext: sealed.ciphertext };
  return { env, json: envelopeToJson(env), open: async (ct) => decodeResponse(await sealed.openResponse(ct)) };
}

export interface Session {
  userId: string;
  sessionKey: Uint8Array;
  exportKey: Uint8Array;
  token: Uint8Array;
  generation: number;
  attempt: number;
}

/** The backup key RawClient deposits (so that the SDK can recover it: W is wrapped as Vault.wrap does). */
export const BACKUP_KEY = new Uint8Array(32).fill(42);

type Ok<T extends VaultResponse['type']> = Extract<VaultResponse, { type: T; outcome: 'Ok' }>;

/**
 * Drives the vault protocol step by step over HTTP, keeping every sealed call so a test can
 * replay it. Wrong passwords and refusals come back as responses, not exceptions.
 */
export class RawClient {
  readonly calls: SealedCall[] = [];

  constructor(
    private readonly h: HttpSystem,
    private readonly headers: Record<string, string> = {},
  ) {}

  private ids(userId: string) {
    return { client: userId, server: toHex(this.h.fleet.fleetId) };
  }

  /** Sends an envelope JSON; opens a sealed answer with `call` when given. */
  async send(json: unknown, call?: SealedCall): Promise<{ http: HttpReply; res?: VaultResponse }> {
    const http = await this.h.post(JSON.stringify(json), { headers: this.headers });
    if (http.status === 200 && call) {
      const ct = (http.json as { ct: string }).ct;
      return { http, res: await call.open(fromBase64(ct)) };
    }
    return { http };
  }

  async call(req: VaultRequest, o?: SealOverrides): Promise<{ http: HttpReply; res?: VaultResponse; sealed: SealedCall }> {
    const sealed = await sealCall(this.h.fleet, req, o);
    this.calls.push(sealed);
    return { ...(await this.send(sealed.json, sealed)), sealed };
  }

  /** Replays a sealed call byte for byte and opens the answer with the original context. */
  async replay(c: SealedCall): Promise<{ http: HttpReply; res?: VaultResponse }> {
    return this.send(c.json, c);
  }

  private async ok<T extends VaultRequest['type']>(req: Extract<VaultRequest, { type: T }>): Promise<{ res: Ok<T>; sealed: SealedCall }> {
    const r = await this.call(req);
    if (!r.res || r.res.outcome !== 'Ok') throw new Error(`${req.type} failed: HTTP ${r.http.status} ${r.http.text} ${JSON.stringify(r.res)}`);
    return { res: r.res as Ok<T>, sealed: r.sealed };
  }

  async status(userId: string): Promise<Ok<'Status'>> {
    return (await this.ok({ type: 'Status', userId, nonce: new Uint8Array(16).fill(1) })).res;
  }

  /** Registers (RegisterStart, RegisterFinish); returns both sealed calls. */
  async register(userId: string, password: string, maxGuesses = 10): Promise<{ start: SealedCall; finish: SealedCall }> {
    await opaqueReady;
    const reg = clientStartRegistration(password);
    const s = await this.ok({ type: 'RegisterStart', userId, registrationRequest: reg.request });
    const fin = clientFinishRegistration(password, reg.state, s.res.registrationResponse, this.ids(userId), 'insecure-fast-for-tests-only');
    const wrappedKey = await aesGcmSeal(await hkdf(fin.exportKey, utf8(LABEL.wrap), 32), BACKUP_KEY, wrapAd(this.h.fleet.fleetId, userId));
    const f = await this.ok({ type: 'RegisterFinish', userId, registrationRecord: fin.record, wrappedKey, maxGuesses, state: s.res.state });
    return { start: s.sealed, finish: f.sealed };
  }

  /** KE1 only: returns the login state for a later KE3, or the refusal. */
  async ke1(userId: string, password: string) {
    await opaqueReady;
    const start = clientStartLogin(password);
    const r = await this.call({ type: 'RecoverStart', userId, ke1: start.ke1 });
    return { ...r, clientState: start.state };
  }

  /**
   * A full login. With the wrong password, KE3 is still sent (a random one), so that the attempt is
   * consumed as a failure. Returns the session on success.
   */
  async login(userId: string, password: string): Promise<{ ke1: SealedCall; ke3: SealedCall; session?: Session; finish: VaultResponse }> {
    const k = await this.ke1(userId, password);
    if (!k.res || k.res.outcome !== 'Ok' || k.res.type !== 'RecoverStart') throw new Error(`RecoverStart failed: ${k.http.status} ${JSON.stringify(k.res)}`);
    const fin = clientFinishLogin(password, k.clientState, k.res.ke2, this.ids(userId), 'insecure-fast-for-tests-only');
    const ke3 = fin?.ke3 ?? globalThis.crypto.getRandomValues(new Uint8Array(64));
    const done = await this.call({ type: 'RecoverFinish', userId, ke3, state: k.res.state });
    if (!done.res) throw new Error(`RecoverFinish failed: ${done.http.status} ${done.http.text}`);
    if (fin && done.res.outcome === 'Ok' && done.res.type === 'RecoverFinish') {
      const session = { userId, sessionKey: fin.sessionKey, exportKey: fin.exportKey, token: done.res.sessionToken, generation: done.res.generation, attempt: done.res.attempt };
      return { ke1: k.sealed, ke3: done.sealed, session, finish: done.res };
    }
    return { ke1: k.sealed, ke3: done.sealed, finish: done.res };
  }

  /** Fills in the session-op MAC of a change-password or delete request. */
  async authorise<R extends Extract<VaultRequest, { type: SessionOperation }>>(s: Session, req: R): Promise<R> {
    const opKey = await hkdf(s.sessionKey, utf8(SUBKEY.sessionOp), 32);
    const mac = await hmacSha256(opKey, sessionOpMacInput(req.type, this.h.fleet.fleetId, s.userId, s.generation, s.attempt, sessionPayloadDigest(req)));
    return { ...req, auth: { token: s.token, mac } };
  }

  async changePassword(s: Session, newPassword: string): Promise<{ start: SealedCall; finish: SealedCall; generation: number }> {
    const reg = clientStartRegistration(newPassword);
    const start = await this.ok(await this.authorise(s, { type: 'ChangePasswordStart', userId: s.userId, auth: { token: s.token, mac: new Uint8Array(32) }, registrationRequest: reg.request }));
    const fin = clientFinishRegistration(newPassword, reg.state, start.res.registrationResponse, this.ids(s.userId), 'insecure-fast-for-tests-only');
    const wrappedKey = await aesGcmSeal(await hkdf(fin.exportKey, utf8(LABEL.wrap), 32), BACKUP_KEY, wrapAd(this.h.fleet.fleetId, s.userId));
    const finish = await this.ok(await this.authorise(s, { type: 'ChangePasswordFinish', userId: s.userId, auth: { token: s.token, mac: new Uint8Array(32) }, registrationRecord: fin.record, wrappedKey, maxGuesses: 10, state: start.res.state }));
    return { start: start.sealed, finish: finish.sealed, generation: finish.res.generation };
  }

  async delete(s: Session): Promise<SealedCall> {
    return (await this.ok(await this.authorise(s, { type: 'Delete', userId: s.userId, auth: { token: s.token, mac: new Uint8Array(32) } }))).sealed;
  }
}
