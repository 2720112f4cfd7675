/**
 * Fleet keys, their domain-separated subkeys, and the HSM's persistent secrets (DESIGN section 4,
 * "Fleet keys" and "Domain separation").
 */
import { Reader, Writer } from '../protocol/encoding.js';
import { SUBKEY } from '../protocol/labels.js';
import { fleetIdOf, type FleetPublicKeys } from '../protocol/fleet.js';
import type { RouteRange } from '../protocol/ids.js';
import { utf8 } from '../crypto/bytes.js';
import { ed25519PublicKey, hkdf } from '../crypto/server.js';
import { serverPublicKey } from '../crypto/opaque.js';
import { x25519PublicKey } from '../crypto/hpke-node.js';
import { ProtocolError } from '../protocol/errors.js';

export interface FleetSecrets {
  /** OPAQUE server setup: OPRF seed and AKE key pair. */
  opaque: Uint8Array;
  /** X25519 private key for requests to the fleet. */
  hpke: Uint8Array;
  /** Ed25519 seed for fleet statements and countersignatures. */
  sign: Uint8Array;
  /** Root of the MAC subkeys. */
  mac: Uint8Array;
  /** Root of the record epoch keys. */
  record: Uint8Array;
}

export interface FleetPolicy {
  defaultMaxGuesses: number;
  /** Registrations allowed after destructions (I2a). */
  reRegistrationLimit: number;
  /** Minimum interval between NVRAM writes (DESIGN section 5, P). */
  persistIntervalMs: number;
  /** Entries the leader may have uncommitted (D). */
  maxUncommitted: number;
  /** Entries an overlay covers (W). */
  overlayWindow: number;
  /** How often the record epoch ratchets (default 30 days). */
  epochIntervalMs: number;
}

export const DEFAULT_POLICY: FleetPolicy = {
  defaultMaxGuesses: 10,
  reRegistrationLimit: 2,
  persistIntervalMs: 10,
  maxUncommitted: 8,
  overlayWindow: 16,
  epochIntervalMs: 30 * 24 * 3600 * 1000,
};

/** What every member of a fleet holds: fixed at the ceremony. */
export interface FleetConfig {
  /** Member ids (16 bytes each), in a fixed order. */
  members: Uint8Array[];
  policy: FleetPolicy;
  routes: RouteRange[];
}

export interface Subkeys {
  recordId: Uint8Array;
  logEntry: Uint8Array;
  capture: Uint8Array;
  loginState: Uint8Array;
  registerState: Uint8Array;
  session: Uint8Array;
  response: Uint8Array;
  epochState: Uint8Array;
}

function sub(root: Uint8Array, label: string): Uint8Array {
  return hkdf(root, new Uint8Array(0), utf8(label), 32);
}

export function deriveSubkeys(mac: Uint8Array): Subkeys {
  return {
    recordId: sub(mac, SUBKEY.recordId),
    logEntry: sub(mac, SUBKEY.logEntry),
    capture: sub(mac, SUBKEY.capture),
    loginState: sub(mac, SUBKEY.loginState),
    registerState: sub(mac, SUBKEY.registerState),
    session: sub(mac, SUBKEY.session),
    response: sub(mac, SUBKEY.response),
    epochState: sub(mac, 'bkv/v1/epoch-state'),
  };
}

/** Epoch 0's key comes from the record root; epoch n+1's from epoch n's, so erasing n is final. */
export function firstEpochKey(recordRoot: Uint8Array): Uint8Array {
  return sub(recordRoot, SUBKEY.recordEpoch(0));
}

export function nextEpochKey(current: Uint8Array, next: number): Uint8Array {
  return sub(current, SUBKEY.recordEpoch(next));
}

export function fleetPublicKeys(s: FleetSecrets): FleetPublicKeys {
  return { opaque: serverPublicKey(s.opaque), hpke: x25519PublicKey(s.hpke), sign: ed25519PublicKey(s.sign) };
}

/** Everything the HSM keeps in its secret store. */
export interface HsmSecrets {
  identitySeed: Uint8Array;
  fleet?: {
    secrets: FleetSecrets;
    config: FleetConfig;
    epoch: number;
    epochKey: Uint8Array;
    /** Key of epoch - 1 while records sealed under it remain (DESIGN section 4, "Record epochs"). */
    previousEpochKey?: Uint8Array;
  };
}

const SECRETS_LABEL = 'bkv/v1/hsm-secrets';
const FLEET_BLOB_LABEL = 'bkv/v1/fleet-blob';

type FleetPart = NonNullable<HsmSecrets['fleet']>;

/** The fleet part alone: what the key ceremony wraps to each member's identity key. */
export function encodeFleetBlob(f: FleetPart): Uint8Array {
  const full = encodeHsmSecrets({ identitySeed: new Uint8Array(32), fleet: f });
  return new Writer().label(FLEET_BLOB_LABEL).bytes(full).finish();
}

export function decodeFleetBlob(b: Uint8Array): FleetPart {
  const r = new Reader(b).expectLabel(FLEET_BLOB_LABEL);
  const full = decodeHsmSecrets(r.bytes());
  r.done();
  if (!full.fleet) throw new ProtocolError('Malformed', 'fleet blob without a fleet');
  return full.fleet;
}

export function encodeHsmSecrets(s: HsmSecrets): Uint8Array {
  const w = new Writer().label(SECRETS_LABEL).fixed(s.identitySeed, 32).bool(s.fleet !== undefined);
  if (s.fleet) {
    const f = s.fleet;
    w.fixed(f.secrets.opaque, 128).fixed(f.secrets.hpke, 32).fixed(f.secrets.sign, 32).fixed(f.secrets.mac, 32).fixed(f.secrets.record, 32);
    w.u16(f.config.members.length);
    for (const m of f.config.members) w.fixed(m, 16);
    const p = f.config.policy;
    w.u8(p.defaultMaxGuesses).u8(p.reRegistrationLimit).u32(p.persistIntervalMs).u32(p.maxUncommitted).u32(p.overlayWindow);
    w.u16(f.config.routes.length);
    for (const r of f.config.routes) w.u16(r.from).u16(r.to);
    w.u64(p.epochIntervalMs);
    w.u32(f.epoch).fixed(f.epochKey, 32).bool(f.previousEpochKey !== undefined);
    if (f.previousEpochKey) w.fixed(f.previousEpochKey, 32);
  }
  return w.finish();
}

export function decodeHsmSecrets(b: Uint8Array): HsmSecrets {
  const r = new Reader(b).expectLabel(SECRETS_LABEL);
  const identitySeed = r.fixed(32);
  if (!r.bool()) {
    r.done();
    return { identitySeed };
  }
  const secrets: FleetSecrets = { opaque: r.fixed(128), hpke: r.fixed(32), sign: r.fixed(32), mac: r.fixed(32), record: r.fixed(32) };
  const members: Uint8Array[] = [];
  const nm = r.u16();
  for (let i = 0; i < nm; i++) members.push(r.fixed(16));
  const policy: FleetPolicy = { defaultMaxGuesses: r.u8(), reRegistrationLimit: r.u8(), persistIntervalMs: r.u32(), maxUncommitted: r.u32(), overlayWindow: r.u32(), epochIntervalMs: 0 };
  const routes: RouteRange[] = [];
  const nr = r.u16();
  for (let i = 0; i < nr; i++) routes.push({ from: r.u16(), to: r.u16() });
  policy.epochIntervalMs = r.u64();
  const epoch = r.u32();
  const epochKey = r.fixed(32);
  const previousEpochKey = r.bool() ? r.fixed(32) : undefined;
  r.done();
  if (members.length === 0) throw new ProtocolError('Malformed', 'fleet without members');
  const fleet = { secrets, config: { members, policy, routes }, epoch, epochKey };
  return { identitySeed, fleet: previousEpochKey ? { ...fleet, previousEpochKey } : fleet };
}

export { fleetIdOf };
