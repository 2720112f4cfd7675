/**
 * Bundle mode (DESIGN section 6, I7): the client pins the validator, the log, the witnesses, the
 * operator and the accepted HSM code, not the fleet; it learns the fleet's keys from a validation
 * bundle and uses them only after every check below has passed, in this order:
 *
 *   1. signatures: the operator's and the validator's on the statement, the fleet's
 *      countersignature, the log's on the checkpoint, and any witness cosignatures;
 *   2. the fleet: its id is the hash of the listed keys, and it is the fleet the server fronts
 *      (the OPAQUE server key is then checked against the listed one at every login, vault.ts);
 *   3. the validity window; 4. the measurement allowlist; 5. inclusion in the checkpoint;
 *   6. k witness cosignatures newer than 7 days;
 *   7. no going back: seq at least the highest seen for this fleet (and the release's minimum),
 *      and the checkpoint consistent with the largest one seen (and the release's minimum).
 *
 * Each check fails with its own `BundleErrorCode`. Two valid inconsistent checkpoints are kept in
 * the client state as evidence of misbehaviour. Browser-safe: WebCrypto and pure code only.
 */
import { bytesEqual, fromBase64, fromHex, toBase64, toHex } from '../crypto/bytes.js';
import { MAX_BUNDLE_BYTES, parseBundleJson, type ParsedBundle } from '../protocol/bundle.js';
import { readBoundedText } from '../protocol/read-bounded.js';
import { ProtocolError } from '../protocol/errors.js';
import { fleetIdOf, type PinnedFleet } from '../protocol/fleet.js';
import { countersignInput, MAX_WINDOW_SECONDS, statementLeafHash, type FleetKeysStatement } from '../protocol/statement.js';
import {
  SIGNATURE_TYPE_COSIGNATURE_V1,
  SIGNATURE_TYPE_ED25519,
  TlogError,
  open,
  openCheckpoint,
  parseVerifierKey,
  verifyConsistency,
  verifyInclusion,
  type Checkpoint,
  type VerifierKey,
} from '../protocol/tlog/index.js';
import * as ed25519 from '../protocol/tlog/ed25519.js';
import type { KeyStretching } from '../crypto/opaque.js';
import type { Transport } from './transport.js';
import { Vault } from './vault.js';

export const BUNDLE_ERROR_CODES = [
  'Malformed',
  'BadOperatorSignature',
  'MissingValidatorSignature',
  'BadValidatorSignature',
  'MissingCountersignature',
  'BadCountersignature',
  'UnknownLogKey',
  'BadCheckpointSignature',
  'WrongLog',
  'BadCosignature',
  'FleetIdMismatch',
  'WrongFleet',
  'NotYetValid',
  'Expired',
  'WindowTooLong',
  'MeasurementNotAllowed',
  'InclusionProof',
  'WitnessQuorum',
  'SeqRegression',
  'ConsistencyProofMissing',
  'InconsistentCheckpoint',
] as const;

export type BundleErrorCode = (typeof BUNDLE_ERROR_CODES)[number];

/** A bundle check failed. Its `protocolCode` is always `TrustFailure` (exit 7 in the CLI). */
export class BundleError extends Error {
  readonly protocolCode = 'TrustFailure' as const;
  constructor(
    readonly code: BundleErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'BundleError';
  }
}

/** DESIGN section 6: witness cosignatures must be newer than 7 days. */
export const MAX_COSIGNATURE_AGE_SECONDS = 7 * 24 * 3600;
/** A cosignature timestamp this far ahead of the client's clock still counts (clock skew). */
const MAX_CLOCK_SKEW_SECONDS = 600;

// --- the trust configuration ---

/** What the client pins in bundle mode (its own configuration, never a server's: I7). */
export interface ValidatorTrust {
  /** The validator's attestation key (signs statements). */
  readonly validator: VerifierKey;
  readonly log: { readonly origin: string; readonly key: VerifierKey };
  /** Witness cosigner keys (type 0x04) and how many of them must have cosigned. */
  readonly witnesses: readonly VerifierKey[];
  readonly quorum: number;
  readonly operator: VerifierKey;
  /** Accepted HSM code measurements. */
  readonly measurements: readonly Uint8Array[];
  /** Shipped with the release: the lowest seq and the checkpoint the client starts from. */
  readonly minimum: { readonly seq: number; readonly checkpoint?: { readonly size: number; readonly root: Uint8Array } };
}

/** The JSON form of `ValidatorTrust` (`--trust-validator FILE`). */
export interface ValidatorTrustFile {
  version: 1;
  mode: 'validator';
  validator: string;
  log: { origin: string; key: string };
  witnesses: { keys: string[]; quorum: number };
  operator: string;
  measurements: string[];
  minimum?: { seq?: number; checkpoint?: { size: number; root: string } };
}

function trustError(message: string): ProtocolError {
  return new ProtocolError('TrustFailure', `validator trust file: ${message}`);
}

function vkey(v: unknown, what: string, type: number): VerifierKey {
  if (typeof v !== 'string') throw trustError(`${what} must be a verifier key`);
  let k: VerifierKey;
  try {
    k = parseVerifierKey(v);
  } catch (e) {
    throw trustError(`${what}: ${(e as Error).message}`);
  }
  if (k.type !== type) throw trustError(`${what} has the wrong signature type`);
  return k;
}

/** Parses and checks a trust file. Throws `ProtocolError('TrustFailure')`. */
export function parseValidatorTrust(json: unknown): ValidatorTrust {
  if (typeof json !== 'object' || json === null) throw trustError('not an object');
  const t = json as Record<string, unknown>;
  if (t.version !== 1 || t.mode !== 'validator') throw trustError('unsupported version or mode');
  const log = t.log as Record<string, unknown> | undefined;
  if (typeof log !== 'object' || log === null || typeof log.origin !== 'string' || log.origin.length === 0) throw trustError('log.origin missing');
  const w = t.witnesses as Record<string, unknown> | undefined;
  if (typeof w !== 'object' || w === null || !Array.isArray(w.keys)) throw trustError('witnesses.keys missing');
  const witnesses = w.keys.map((k, i) => vkey(k, `witnesses.keys[${i}]`, SIGNATURE_TYPE_COSIGNATURE_V1));
  const quorum = w.quorum;
  if (typeof quorum !== 'number' || !Number.isInteger(quorum) || quorum < 0 || quorum > witnesses.length) throw trustError('witnesses.quorum must be 0..number of witnesses');
  if (new Set(witnesses.map((k) => `${k.name}+${k.keyId}`)).size !== witnesses.length) throw trustError('a witness is listed twice');
  if (!Array.isArray(t.measurements) || t.measurements.length === 0) throw trustError('measurements must list at least one sha256:<hex>');
  const measurements = t.measurements.map((m) => {
    if (typeof m !== 'string' || !/^sha256:[0-9a-f]{64}$/.test(m)) throw trustError('a measurement must be sha256:<64 hex>');
    return fromHex(m.slice(7));
  });
  const min = (t.minimum ?? {}) as Record<string, unknown>;
  const seq = min.seq ?? 0;
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) throw trustError('minimum.seq must be a non-negative integer');
  let checkpoint: { size: number; root: Uint8Array } | undefined;
  if (min.checkpoint !== undefined) {
    const c = min.checkpoint as Record<string, unknown>;
    let root: Uint8Array;
    try {
      root = fromBase64(String(c.root));
    } catch {
      throw trustError('minimum.checkpoint.root must be base64');
    }
    if (typeof c.size !== 'number' || !Number.isSafeInteger(c.size) || c.size < 0 || root.length !== 32) throw trustError('minimum.checkpoint must be {size, root}');
    checkpoint = { size: c.size, root };
  }
  return {
    validator: vkey(t.validator, 'validator', SIGNATURE_TYPE_ED25519),
    log: { origin: log.origin, key: vkey(log.key, 'log.key', SIGNATURE_TYPE_ED25519) },
    witnesses,
    quorum,
    operator: vkey(t.operator, 'operator', SIGNATURE_TYPE_ED25519),
    measurements,
    minimum: checkpoint ? { seq, checkpoint } : { seq },
  };
}

// --- client state ---

/** A checkpoint the client verified, kept to refuse a later inconsistent one. */
export interface SeenCheckpoint {
  readonly origin: string;
  readonly size: number;
  /** base64 */
  readonly root: string;
  /** The signed note, when the client has it (not for a release's minimum). */
  readonly note?: string;
}

export interface ClientState {
  /** Highest seq accepted per fleet id (hex). */
  fleets: Record<string, { seq: number }>;
  /** The largest verified checkpoint of the pinned log. */
  checkpoint?: SeenCheckpoint;
  /** Pairs of valid checkpoints that no consistency proof joins: proof of misbehaviour. */
  evidence: { kind: 'inconsistent-checkpoints'; first: SeenCheckpoint; second: SeenCheckpoint; reason: string; at: number }[];
}

export interface ClientStateStore {
  load(): Promise<ClientState>;
  save(state: ClientState): Promise<void>;
}

export function emptyClientState(): ClientState {
  return { fleets: {}, evidence: [] };
}

/** State kept in memory only (an app supplies its own durable store). */
export function memoryStateStore(initial: ClientState = emptyClientState()): ClientStateStore {
  let state = structuredClone(initial);
  return {
    load: async () => structuredClone(state),
    save: async (s) => {
      state = structuredClone(s);
    },
  };
}

// --- verification ---

export interface VerifiedBundle {
  /** What the Vault pins for this session (pinned mode's type, so the vault code is shared). */
  readonly fleet: PinnedFleet;
  readonly statement: FleetKeysStatement;
  readonly checkpoint: Checkpoint;
  readonly index: number;
  readonly cosigners: readonly string[];
}

export interface VerifyOptions {
  /** POSIX seconds. */
  readonly now: number;
  /** The fleet id the server says it fronts: a bundle for another fleet is refused. */
  readonly expectedFleetId?: Uint8Array;
}

function fail(code: BundleErrorCode, message: string): never {
  throw new BundleError(code, message);
}

async function verifyEd25519(publicKey: Uint8Array, signature: Uint8Array, message: Uint8Array): Promise<boolean> {
  try {
    return await ed25519.verify(await ed25519.importPublicKey(publicKey), signature, message);
  } catch {
    return false;
  }
}

/**
 * Opens a note with one known key: 'absent' if that key did not sign, 'bad' if it did badly.
 * Never rejects (the checks run concurrently and may be judged, or abandoned, in any order).
 */
async function signedBy(note: string, key: VerifierKey): Promise<'ok' | 'absent' | 'bad'> {
  try {
    await open(note, [key]);
    return 'ok';
  } catch (e) {
    return e instanceof TlogError && e.code === 'BadSignature' ? 'bad' : 'absent';
  }
}

/** The tree size from which the client wants a consistency proof (the larger reference it holds). */
export function consistencyReference(trust: ValidatorTrust, state: ClientState): { size: number; root: Uint8Array; seen: SeenCheckpoint } | undefined {
  const stored = state.checkpoint && state.checkpoint.origin === trust.log.origin ? state.checkpoint : undefined;
  const min = trust.minimum.checkpoint;
  const minSeen: SeenCheckpoint | undefined = min ? { origin: trust.log.origin, size: min.size, root: toBase64(min.root) } : undefined;
  const ref = stored && (!minSeen || stored.size >= minSeen.size) ? stored : minSeen;
  if (!ref || ref.size === 0) return undefined;
  return { size: ref.size, root: fromBase64(ref.root), seen: ref };
}

/**
 * Verifies a bundle against the pinned trust and the client's state, in DESIGN section 6's order,
 * and records what it saw. Throws `BundleError`; nothing about the fleet may be used unless this
 * returns.
 */
export async function verifyBundle(input: ParsedBundle | unknown, trust: ValidatorTrust, store: ClientStateStore, opts: VerifyOptions): Promise<VerifiedBundle> {
  let b: ParsedBundle;
  try {
    b = isParsed(input) ? input : parseBundleJson(input);
  } catch (e) {
    return fail('Malformed', (e as Error).message);
  }
  const signed = b.signed;
  const s = signed.statement;

  // 1. Signatures. They are independent, so WebCrypto runs them concurrently; the outcomes are
  // then judged in order, so the first failing check is the one reported.
  const cpNote = b.tlogProof.checkpoint;
  const settle = <T>(p: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> => p.then((value) => ({ ok: true as const, value }), (error: unknown) => ({ ok: false as const, error }));
  const vs = signed.validatorSignature;
  const pending = {
    operator: signedBy(b.statement, trust.operator),
    validator: signedBy(b.statement, trust.validator),
    countersignature: vs && b.countersignature ? verifyEd25519(s.keys.sign, b.countersignature, countersignInput(s.fleetId, signed.text, vs)) : Promise.resolve(false),
    checkpoint: settle(openCheckpoint(cpNote, { origin: trust.log.origin, log: trust.log.key })),
    witnesses: trust.witnesses.map((w) => settle(open(cpNote, [w]))),
  };
  // The operator's first, under the pinned operator key.
  const op = signed.operatorSignature;
  if (op.name !== trust.operator.name || op.keyId !== trust.operator.keyId) fail('BadOperatorSignature', 'the statement is not signed by the pinned operator key');
  if ((await pending.operator) !== 'ok') fail('BadOperatorSignature', 'the operator\'s signature does not verify');
  if (!vs || vs.name !== trust.validator.name || vs.keyId !== trust.validator.keyId) fail('MissingValidatorSignature', 'the statement is not signed by the pinned validator');
  if ((await pending.validator) !== 'ok') fail('BadValidatorSignature', 'the validator\'s signature does not verify');
  if (!b.countersignature) fail('MissingCountersignature', 'the bundle has no fleet countersignature');
  if (!(await pending.countersignature)) fail('BadCountersignature', 'the fleet countersignature does not verify under the listed sign key');
  const cp = await pending.checkpoint;
  if (!cp.ok) {
    const e = cp.error;
    if (e instanceof TlogError && e.code === 'OriginMismatch') fail('WrongLog', 'the checkpoint is from another log');
    if (e instanceof TlogError && e.code === 'BadSignature') fail('BadCheckpointSignature', 'the log\'s signature on the checkpoint does not verify');
    if (e instanceof TlogError) fail('UnknownLogKey', 'the checkpoint is not signed by the pinned log key');
    return fail('Malformed', (e as Error).message);
  }
  const checkpoint: Checkpoint = cp.value.checkpoint;
  const cosigned: { name: string; timestamp: number }[] = [];
  for (const [i, w] of trust.witnesses.entries()) {
    const r = await pending.witnesses[i]!;
    if (r.ok) {
      for (const v of r.value.verified) if (v.timestamp !== undefined) cosigned.push({ name: w.name, timestamp: v.timestamp });
    } else if (r.error instanceof TlogError && r.error.code === 'BadSignature') {
      fail('BadCosignature', `the cosignature of witness ${w.name} does not verify`);
    }
    // Otherwise (NoVerifiedSignature) this witness did not cosign.
  }

  // 2. The fleet: its id is its keys' hash, and it is the fleet we are talking to.
  if (!bytesEqual(fleetIdOf(s.keys), s.fleetId)) fail('FleetIdMismatch', 'the fleet id is not the hash of the listed keys');
  if (opts.expectedFleetId && !bytesEqual(opts.expectedFleetId, s.fleetId)) fail('WrongFleet', 'the bundle is for another fleet than the server fronts');

  // 3. The validity window (and the policy maximum, which the client holds the validator to).
  if (s.notAfter - s.notBefore > MAX_WINDOW_SECONDS) fail('WindowTooLong', 'the statement\'s window is longer than 30 days');
  if (opts.now < s.notBefore) fail('NotYetValid', 'the statement is not valid yet');
  if (opts.now > s.notAfter) fail('Expired', 'the statement has expired');

  // 4. The HSM code.
  if (!trust.measurements.some((m) => bytesEqual(m, s.measurement))) fail('MeasurementNotAllowed', `HSM code sha256:${toHex(s.measurement)} is not in the allowlist`);

  // 5. Inclusion of this very statement note in the checkpoint's tree.
  const index = b.tlogProof.index;
  try {
    verifyInclusion(index, checkpoint.treeSize, statementLeafHash(b.statement), b.tlogProof.proof, checkpoint.rootHash);
  } catch (e) {
    if (e instanceof TlogError) fail('InclusionProof', `the statement is not proven to be in the log: ${e.message}`);
    throw e;
  }

  // 6. k distinct witnesses, each with a cosignature newer than 7 days.
  const fresh = new Set(cosigned.filter((c) => c.timestamp >= opts.now - MAX_COSIGNATURE_AGE_SECONDS && c.timestamp <= opts.now + MAX_CLOCK_SKEW_SECONDS).map((c) => c.name));
  if (fresh.size < trust.quorum) fail('WitnessQuorum', `${fresh.size} fresh witness cosignatures of ${trust.quorum} required`);

  // 7. Never backwards: seq and checkpoints, against what this client has seen.
  const state = await store.load();
  const fleetHex = toHex(s.fleetId);
  const highest = Math.max(state.fleets[fleetHex]?.seq ?? 0, trust.minimum.seq);
  if (s.seq < highest) fail('SeqRegression', `statement seq ${s.seq} is older than seq ${highest} already seen`);
  const seen: SeenCheckpoint = { origin: checkpoint.origin, size: checkpoint.treeSize, root: toBase64(checkpoint.rootHash), note: cpNote };
  const ref = consistencyReference(trust, state);
  if (ref) {
    const inconsistent = async (reason: string): Promise<never> => {
      state.evidence.push({ kind: 'inconsistent-checkpoints', first: ref.seen, second: seen, reason, at: opts.now });
      await store.save(state);
      return fail('InconsistentCheckpoint', `the checkpoint is inconsistent with one seen before (${reason}); both are kept as evidence`);
    };
    if (ref.size === checkpoint.treeSize) {
      if (!bytesEqual(ref.root, checkpoint.rootHash)) await inconsistent('same size, different root');
    } else {
      const [lo, hi] = ref.size < checkpoint.treeSize ? [ref, { size: checkpoint.treeSize, root: checkpoint.rootHash }] : [{ size: checkpoint.treeSize, root: checkpoint.rootHash }, ref];
      const c = b.consistency;
      if (!c || c.size1 !== lo.size || c.size2 !== hi.size) fail('ConsistencyProofMissing', `no consistency proof between tree sizes ${lo.size} and ${hi.size}`);
      try {
        verifyConsistency(lo.size, hi.size, c.proof, lo.root, hi.root);
      } catch (e) {
        if (!(e instanceof TlogError)) throw e;
        await inconsistent(e.message);
      }
    }
  }
  state.fleets[fleetHex] = { seq: Math.max(s.seq, state.fleets[fleetHex]?.seq ?? 0) };
  if (!state.checkpoint || state.checkpoint.origin !== seen.origin || seen.size > state.checkpoint.size) state.checkpoint = seen;
  await store.save(state);

  return {
    fleet: { fleetId: s.fleetId, keys: s.keys, routes: s.routes.map((r) => ({ from: r.from, to: r.to })) },
    statement: s,
    checkpoint,
    index,
    cosigners: [...fresh],
  };
}

function isParsed(v: unknown): v is ParsedBundle {
  return typeof v === 'object' && v !== null && 'signed' in v && 'tlogProof' in v;
}

/**
 * Fetches the fleet's bundle through the front end: a request with no user data, carrying at
 * most the tree size of the checkpoint this client holds (for a consistency proof).
 */
export async function fetchBundle(server: string, consistencyFrom: number | undefined, opts: { fetch?: typeof fetch; timeoutMs?: number } = {}): Promise<ParsedBundle> {
  const doFetch = opts.fetch ?? globalThis.fetch.bind(globalThis);
  const base = server.replace(/\/+$/, '');
  const q = consistencyFrom !== undefined && consistencyFrom > 0 ? `?consistency-from=${consistencyFrom}` : '';
  let res: Response;
  try {
    res = await doFetch(`${base}/v1/bundle${q}`, { signal: AbortSignal.timeout(opts.timeoutMs ?? 30_000) });
  } catch {
    throw new ProtocolError('Unavailable', `cannot reach the vault at ${base}`);
  }
  if (!res.ok) {
    await res.body?.cancel().catch(() => undefined);
    throw new ProtocolError('Unavailable', `the vault at ${base} serves no validation bundle (HTTP ${res.status})`);
  }
  let text: string;
  try {
    text = await readBoundedText(res, MAX_BUNDLE_BYTES + 64 * 1024);
  } catch {
    throw new BundleError('Malformed', 'the bundle is too large, or its transfer broke off');
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new BundleError('Malformed', 'the bundle is not JSON');
  }
  try {
    return parseBundleJson(json);
  } catch (e) {
    throw new BundleError('Malformed', (e as Error).message);
  }
}

export interface BundleVaultOptions {
  readonly bundle: ParsedBundle | unknown;
  readonly trust: ValidatorTrust;
  readonly store: ClientStateStore;
  readonly transport: Transport;
  /** POSIX seconds; the system clock by default. */
  readonly now?: number;
  readonly expectedFleetId?: Uint8Array;
  readonly keyStretching?: KeyStretching;
}

/**
 * A Vault for the fleet a bundle names, once the bundle has passed every check (I7): until then
 * nothing is sent to the fleet, and a bundle that fails yields no Vault at all.
 */
export async function vaultFromBundle(o: BundleVaultOptions): Promise<{ vault: Vault; verified: VerifiedBundle }> {
  const verified = await verifyBundle(o.bundle, o.trust, o.store, { now: o.now ?? Math.floor(Date.now() / 1000), ...(o.expectedFleetId ? { expectedFleetId: o.expectedFleetId } : {}) });
  const vault = new Vault({ fleet: verified.fleet, transport: o.transport, ...(o.keyStretching ? { keyStretching: o.keyStretching } : {}) });
  return { vault, verified };
}
