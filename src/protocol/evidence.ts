/**
 * The deployment evidence package (DESIGN section 7): what the operator publishes for a fleet and
 * whose SHA-256 the statement names (`evidence sha256:<hex>`). This is the minimal package of
 * docs/decisions.md ("Deployment evidence"): the fleet's public keys and id, its route ranges, its
 * members and policy, and the HSM code measurement. Vendor-root attestations have a place
 * (`attestations`) but are not produced or verified yet; `verifyEvidence` says so in its result
 * rather than pretending.
 *
 * The digest is over the exact bytes published, so the package is kept and served byte for byte;
 * the JSON form is only how those bytes are read.
 */
import { bytesEqual, fromBase64, fromHex, toBase64, toHex, utf8 } from '../crypto/bytes.js';
import { sha256 } from '../crypto/sha256.js';
import { ProtocolError } from './errors.js';
import { fleetIdOf, type FleetPublicKeys } from './fleet.js';
import type { RouteRange } from './ids.js';
import { checkRoutes, fleetKeysEqual, routesEqual, type FleetKeysStatement } from './statement.js';

export const EVIDENCE_TYPE = 'backup-key-vault/deployment-evidence/v1';
/** The measurement method of src/audit/measurement.ts. */
export const MEASUREMENT_METHOD = 'bkv-hsm-js/v1';
export const MAX_EVIDENCE_BYTES = 64 * 1024;
const MAX_MEMBERS = 64;

export interface EvidenceMember {
  /** Member id, 16 bytes. */
  readonly id: Uint8Array;
  /** The member's Ed25519 identity key, where the ceremony recorded it. */
  readonly identityKey?: Uint8Array;
}

export interface EvidencePolicy {
  readonly defaultMaxGuesses: number;
  readonly reRegistrationLimit: number;
  /** Statements of a majority of members certify an entry (DESIGN section 5). */
  readonly quorum: number;
}

export interface EvidencePackage {
  readonly type: typeof EVIDENCE_TYPE;
  readonly fleetId: Uint8Array;
  readonly keys: FleetPublicKeys;
  readonly routes: readonly RouteRange[];
  readonly measurement: { readonly method: string; readonly digest: Uint8Array };
  readonly members: readonly EvidenceMember[];
  readonly policy: EvidencePolicy;
  /** Vendor-root attestations by member identity keys; an empty list today (not verified). */
  readonly attestations: readonly unknown[];
}

function bad(message: string): ProtocolError {
  return new ProtocolError('Malformed', `evidence: ${message}`);
}

function obj(v: unknown, what: string, keys: readonly string[]): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad(`${what} must be an object`);
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!keys.includes(k)) throw bad(`${what} has an unknown field ${k}`);
  return o;
}

function b64(v: unknown, what: string, length: number): Uint8Array {
  if (typeof v !== 'string') throw bad(`${what} missing`);
  let b: Uint8Array;
  try {
    b = fromBase64(v);
  } catch {
    throw bad(`${what} is not base64`);
  }
  if (b.length !== length) throw bad(`${what} must be ${length} bytes`);
  return b;
}

function hex(v: unknown, what: string, length: number): Uint8Array {
  if (typeof v !== 'string' || !new RegExp(`^[0-9a-f]{${2 * length}}$`).test(v)) throw bad(`${what} must be ${2 * length} lowercase hex digits`);
  return fromHex(v);
}

function int(v: unknown, what: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw bad(`${what} must be an integer from ${min} to ${max}`);
  return v;
}

/** Reads a package from its bytes (strict JSON, no unknown fields). Throws `Malformed`. */
export function parseEvidence(bytes: Uint8Array): EvidencePackage {
  if (bytes.length > MAX_EVIDENCE_BYTES) throw new ProtocolError('TooLarge', 'evidence package too large');
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    throw bad('not UTF-8 JSON');
  }
  const o = obj(json, 'package', ['type', 'fleetId', 'keys', 'routes', 'measurement', 'members', 'policy', 'attestations']);
  if (o.type !== EVIDENCE_TYPE) throw bad(`type must be ${EVIDENCE_TYPE}`);
  const k = obj(o.keys, 'keys', ['opaque', 'hpke', 'sign']);
  const keys: FleetPublicKeys = { opaque: b64(k.opaque, 'keys.opaque', 32), hpke: b64(k.hpke, 'keys.hpke', 32), sign: b64(k.sign, 'keys.sign', 32) };
  if (!Array.isArray(o.routes)) throw bad('routes must be a list');
  const routes = o.routes.map((r: unknown, i) => {
    const x = obj(r, `routes[${i}]`, ['from', 'to']);
    return { from: int(x.from, 'route from', 0, 0xffff), to: int(x.to, 'route to', 0, 0xffff) };
  });
  try {
    checkRoutes(routes);
  } catch {
    throw bad('route ranges must be 1..64 ascending disjoint ranges');
  }
  const m = obj(o.measurement, 'measurement', ['method', 'digest']);
  if (typeof m.method !== 'string' || m.method.length === 0 || m.method.length > 64) throw bad('measurement.method missing');
  if (typeof m.digest !== 'string' || !m.digest.startsWith('sha256:')) throw bad('measurement.digest must be sha256:<hex>');
  const measurement = { method: m.method, digest: hex(m.digest.slice(7), 'measurement.digest', 32) };
  if (!Array.isArray(o.members) || o.members.length < 1 || o.members.length > MAX_MEMBERS) throw bad(`members must list 1..${MAX_MEMBERS} members`);
  const members = o.members.map((v: unknown, i): EvidenceMember => {
    const x = obj(v, `members[${i}]`, ['id', 'identityKey']);
    const id = hex(x.id, `members[${i}].id`, 16);
    return x.identityKey === undefined ? { id } : { id, identityKey: b64(x.identityKey, `members[${i}].identityKey`, 32) };
  });
  const p = obj(o.policy, 'policy', ['defaultMaxGuesses', 'reRegistrationLimit', 'quorum']);
  const policy: EvidencePolicy = {
    defaultMaxGuesses: int(p.defaultMaxGuesses, 'policy.defaultMaxGuesses', 1, 255),
    reRegistrationLimit: int(p.reRegistrationLimit, 'policy.reRegistrationLimit', 0, 255),
    quorum: int(p.quorum, 'policy.quorum', 1, MAX_MEMBERS),
  };
  if (!Array.isArray(o.attestations)) throw bad('attestations must be a list');
  return { type: EVIDENCE_TYPE, fleetId: hex(o.fleetId, 'fleetId', 32), keys, routes, measurement, members, policy, attestations: o.attestations };
}

/** Writes a package as the bytes to publish (the digest is over exactly these). */
export function formatEvidence(e: Omit<EvidencePackage, 'type'>): Uint8Array {
  const json = {
    type: EVIDENCE_TYPE,
    fleetId: toHex(e.fleetId),
    keys: { opaque: toBase64(e.keys.opaque), hpke: toBase64(e.keys.hpke), sign: toBase64(e.keys.sign) },
    routes: e.routes.map((r) => ({ from: r.from, to: r.to })),
    measurement: { method: e.measurement.method, digest: `sha256:${toHex(e.measurement.digest)}` },
    members: e.members.map((m) => (m.identityKey ? { id: toHex(m.id), identityKey: toBase64(m.identityKey) } : { id: toHex(m.id) })),
    policy: { defaultMaxGuesses: e.policy.defaultMaxGuesses, reRegistrationLimit: e.policy.reRegistrationLimit, quorum: e.policy.quorum },
    attestations: [...e.attestations],
  };
  return utf8(`${JSON.stringify(json, null, 2)}\n`);
}

export function evidenceDigest(bytes: Uint8Array): Uint8Array {
  return sha256(bytes);
}

export type EvidenceCheck =
  | { readonly ok: true; readonly evidence: EvidencePackage; readonly notVerified: readonly string[] }
  | { readonly ok: false; readonly code: 'EvidenceMismatch' | 'EvidenceInvalid'; readonly message: string };

/**
 * The checks of `audit fleet` (DESIGN section 7) that this version can make: the digest is the
 * statement's; the package is well formed; its fleet id is the hash of its keys; its keys, routes
 * and measurement are the statement's; the quorum is a majority of its members, which are
 * distinct. What it cannot check yet is returned in `notVerified` (docs/decisions.md).
 */
export function verifyEvidence(bytes: Uint8Array, statement: FleetKeysStatement): EvidenceCheck {
  if (!bytesEqual(evidenceDigest(bytes), statement.evidence)) return { ok: false, code: 'EvidenceMismatch', message: 'the evidence package does not have the digest the statement names' };
  let e: EvidencePackage;
  try {
    e = parseEvidence(bytes);
  } catch (err) {
    return { ok: false, code: 'EvidenceInvalid', message: (err as Error).message };
  }
  if (!bytesEqual(fleetIdOf(e.keys), e.fleetId)) return { ok: false, code: 'EvidenceInvalid', message: 'evidence: the fleet id is not the hash of the keys' };
  if (!bytesEqual(e.fleetId, statement.fleetId) || !fleetKeysEqual(e.keys, statement.keys)) return { ok: false, code: 'EvidenceInvalid', message: 'evidence: fleet id or keys differ from the statement' };
  if (!routesEqual(e.routes, statement.routes)) return { ok: false, code: 'EvidenceInvalid', message: 'evidence: route ranges differ from the statement' };
  if (!bytesEqual(e.measurement.digest, statement.measurement)) return { ok: false, code: 'EvidenceInvalid', message: 'evidence: measurement differs from the statement' };
  if (e.measurement.method !== MEASUREMENT_METHOD) return { ok: false, code: 'EvidenceInvalid', message: `evidence: unknown measurement method ${e.measurement.method}` };
  const ids = new Set(e.members.map((m) => toHex(m.id)));
  if (ids.size !== e.members.length) return { ok: false, code: 'EvidenceInvalid', message: 'evidence: a member is listed twice' };
  if (e.policy.quorum !== Math.floor(e.members.length / 2) + 1) return { ok: false, code: 'EvidenceInvalid', message: 'evidence: the quorum must be a majority of the members' };
  const notVerified = ['vendor-root attestations of member identity keys and of key generation', 'reproducible rebuild of the measured HSM code from a tagged release'];
  return { ok: true, evidence: e, notVerified };
}
