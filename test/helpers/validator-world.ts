/**
 * An in-process world for bundle mode: an operator key, a validator with its SQLite log, two
 * witnesses reached through a fetch stub, and one software HSM with a fleet, on a clock the test
 * controls. `publish()` runs the whole publication (operator signs, validator checks, signs, logs
 * and has the checkpoint cosigned, the HSM countersigns) and returns the bundle a fleet serves.
 */
import { mkdtempSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pino from 'pino';
import { toHex, utf8 } from '../../src/crypto/bytes.js';
import { sha256 } from '../../src/crypto/sha256.js';
import { opaqueReady } from '../../src/crypto/opaque.js';
import { HsmCore } from '../../src/hsm/core.js';
import type { Platform } from '../../src/hsm/platform.js';
import type { ClientStateStore, ValidatorTrust } from '../../src/client/bundle.js';
import { memoryStateStore } from '../../src/client/bundle.js';
import type { ParsedBundle } from '../../src/protocol/bundle.js';
import type { FleetPublicKeys } from '../../src/protocol/fleet.js';
import { parseSignedStatement } from '../../src/protocol/statement.js';
import { SIGNATURE_TYPE_COSIGNATURE_V1, newSignerKey, parseNote, parseSignerKey, type SignerKey } from '../../src/protocol/tlog/index.js';
import { assembleBundle, buildSignedStatement, type Deployment } from '../../src/validator/publish.js';
import { Validator, type SubmitResult } from '../../src/validator/validator.js';
import { Witness } from '../../src/witness/witness.js';

export const DAY = 24 * 3600;
export const T0 = 1_750_000_000;
export const MEASUREMENT = sha256(utf8('a reproducible build of bkv v0.1.0'));

export function memoryPlatform(clock: () => number): Platform {
  let secrets: Uint8Array | null = null;
  const slots: [Uint8Array | null, Uint8Array | null] = [null, null];
  return {
    randomBytes: (n) => new Uint8Array(randomBytes(n)),
    now: () => clock() * 1000,
    nvram: { read: (s) => slots[s], write: (s, d) => void (slots[s] = d.slice()) },
    secrets: { read: () => secrets, write: (d) => void (secrets = d.slice()) },
  };
}

export async function signer(name: string, type = 1, clock?: () => number): Promise<SignerKey> {
  const { signerKey } = await newSignerKey(name, new Uint8Array(randomBytes(32)), type);
  return parseSignerKey(signerKey, clock ? { clock } : {});
}

export interface Fleet {
  hsm: HsmCore;
  keys: FleetPublicKeys;
  deployment: Deployment;
}

/** The publication view of an HSM that holds fleet keys. */
export function fleetOf(hsm: HsmCore): Fleet {
  const keys = hsm.publicKeys();
  const config = hsm.fleetConfig();
  if (!keys || !config) throw new Error('this HSM has no fleet');
  const deployment: Deployment = {
    keys,
    routes: config.routes,
    members: config.members.map((id) => ({ id })),
    policy: { defaultMaxGuesses: config.policy.defaultMaxGuesses, reRegistrationLimit: config.policy.reRegistrationLimit, quorum: Math.floor(config.members.length / 2) + 1 },
  };
  return { hsm, keys, deployment };
}

export async function makeFleet(clock: () => number): Promise<Fleet> {
  await opaqueReady;
  const hsm = HsmCore.boot(memoryPlatform(clock));
  const created = hsm.createFleet({});
  if (created.type !== 'Created') throw new Error('no fleet');
  return fleetOf(hsm);
}

export interface World {
  dir: string;
  now: { t: number };
  clock: () => number;
  operator: SignerKey;
  logKey: SignerKey;
  attestationKey: SignerKey;
  validator: Validator;
  witnesses: Witness[];
  /** Witness URLs the stub fetch answers; `down` makes one unreachable. */
  down: Set<number>;
  fleet: Fleet;
  trust: ValidatorTrust;
  store: ClientStateStore;
  fetch: typeof fetch;
  /** Every fetch the validator made. */
  fetched: string[];
  /** Publishes a statement for `fleet` (default the world's) and returns the fleet's bundle. */
  publish(o?: { fleet?: Fleet; notBefore?: number; notAfter?: number; measurement?: Uint8Array }): Promise<{ bundle: ParsedBundle; submitted: SubmitResult }>;
  /** The bundle with a consistency proof from tree size `from` (what an agent adds on request). */
  withConsistency(bundle: ParsedBundle, from: number): ParsedBundle;
  close(): Promise<void>;
}

export async function makeWorld(o: { quorum?: number; witnesses?: number } = {}): Promise<World> {
  const dir = mkdtempSync(join(tmpdir(), 'bkv-validator-'));
  const now = { t: T0 };
  const clock = (): number => now.t;
  const origin = 'validator.example/log';
  const operator = await signer('operator.example/bkv');
  const logKey = await signer(origin);
  const attestationKey = await signer('validator.example/attestation');
  const nWitnesses = o.witnesses ?? 2;
  const witnessKeys = await Promise.all(Array.from({ length: nWitnesses }, (_, i) => signer(`witness${i}.example/w`, SIGNATURE_TYPE_COSIGNATURE_V1, clock)));
  const witnesses = witnessKeys.map((k) => new Witness(new Database(':memory:'), k, [{ origin, keys: [logKey.verifier] }], clock));
  const down = new Set<number>();
  const fetched: string[] = [];
  const stubFetch = (async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = String(input);
    fetched.push(url);
    const m = /^http:\/\/witness(\d+)\/add-checkpoint$/.exec(url);
    if (!m || down.has(Number(m[1]))) throw new TypeError('fetch failed');
    const r = await witnesses[Number(m[1])]!.addCheckpoint(String(init?.body ?? ''));
    switch (r.type) {
      case 'Cosigned':
        return new Response(r.body, { status: 200 });
      case 'Conflict':
        return new Response(`${r.latestSize}\n`, { status: 409, headers: { 'content-type': 'text/x.tlog.size' } });
      case 'BadRequest':
        return new Response(r.message, { status: 400 });
      case 'Forbidden':
        return new Response(r.message, { status: 403 });
      case 'UnknownLog':
        return new Response('unknown', { status: 404 });
      case 'InvalidProof':
        return new Response(r.message, { status: 422 });
    }
  }) as typeof fetch;
  const quorum = o.quorum ?? Math.min(nWitnesses, 2);
  const validator = new Validator({
    dbPath: join(dir, 'validator.sqlite'),
    origin,
    logKey,
    attestationKey,
    operator: operator.verifier,
    policy: { maxWindowSeconds: 30 * DAY, measurements: [MEASUREMENT] },
    witnesses: witnessKeys.map((k, i) => ({ url: `http://witness${i}`, key: k.verifier })),
    quorum,
    clock,
    log: pino({ level: 'silent' }),
    fetch: stubFetch,
  });
  const fleet = await makeFleet(clock);
  const trust: ValidatorTrust = {
    validator: attestationKey.verifier,
    log: { origin, key: logKey.verifier },
    witnesses: witnessKeys.map((k) => k.verifier),
    quorum,
    operator: operator.verifier,
    measurements: [MEASUREMENT],
    minimum: { seq: 0 },
  };
  const world: World = {
    dir,
    now,
    clock,
    operator,
    logKey,
    attestationKey,
    validator,
    witnesses,
    down,
    fleet,
    trust,
    store: memoryStateStore(),
    fetch: stubFetch,
    fetched,
    async publish(p = {}) {
      const f = p.fleet ?? fleet;
      const head = validator.chainHead();
      const { note, evidence } = await buildSignedStatement(operator, {
        deployment: f.deployment,
        measurement: p.measurement ?? MEASUREMENT,
        ...(head ? { previous: { seq: head.seq, entry: head.entry } } : {}),
        notBefore: p.notBefore ?? now.t - 60,
        notAfter: p.notAfter ?? now.t + 30 * DAY - 60,
      });
      const submitted = await validator.submit(note, evidence);
      const s = parseSignedStatement(submitted.entry);
      const c = f.hsm.countersign(s.text, s.validatorSignature!);
      if (c.type !== 'Countersigned') throw new Error(`countersign: ${c.type}`);
      return { bundle: assembleBundle(submitted, c.signature), submitted };
    },
    withConsistency(bundle, from) {
      const size = Number(parseNote(bundle.tlogProof.checkpoint).text.split('\n')[1]);
      const [lo, hi] = from <= size ? [from, size] : [size, from];
      return { ...bundle, consistency: { size1: lo, size2: hi, proof: validator.tiles.consistencyProof(lo, hi) } };
    },
    async close() {
      await validator.close();
    },
  };
  return world;
}

export function fleetHex(f: Fleet): string {
  return toHex(f.hsm.status().fleetId!);
}
