/** A fleet's public identity: its public keys, fleet id and the trust file clients pin. */
import { bytesEqual, fromBase64, toBase64, toHex, fromHex } from '../crypto/bytes.js';
import { sha256 } from '../crypto/sha256.js';
import { Writer } from './encoding.js';
import { LABEL } from './labels.js';
import { ProtocolError } from './errors.js';
import type { RouteRange } from './ids.js';

export interface FleetPublicKeys {
  /** OPAQUE server static public key (ristretto255). */
  opaque: Uint8Array;
  /** X25519 key that requests are encrypted to. */
  hpke: Uint8Array;
  /** Ed25519 key of fleet statements and countersignatures. */
  sign: Uint8Array;
}

/** The fleet id is SHA-256 of the public keys' canonical encoding (DESIGN section 4). */
export function fleetIdOf(keys: FleetPublicKeys): Uint8Array {
  return sha256(new Writer().label(LABEL.fleetKeys).fixed(keys.opaque, 32).fixed(keys.hpke, 32).fixed(keys.sign, 32).finish());
}

/** What a client pins in "pinned fleet keys" mode (DESIGN section 1 and I7). */
export interface TrustFile {
  version: 1;
  mode: 'pinned';
  fleetId: string; // hex
  keys: { opaque: string; hpke: string; sign: string }; // base64
  routes: RouteRange[];
}

export interface PinnedFleet {
  fleetId: Uint8Array;
  keys: FleetPublicKeys;
  routes: RouteRange[];
}

export function makeTrustFile(keys: FleetPublicKeys, routes: RouteRange[]): TrustFile {
  return {
    version: 1,
    mode: 'pinned',
    fleetId: toHex(fleetIdOf(keys)),
    keys: { opaque: toBase64(keys.opaque), hpke: toBase64(keys.hpke), sign: toBase64(keys.sign) },
    routes,
  };
}

function key32(v: unknown, name: string): Uint8Array {
  if (typeof v !== 'string') throw new ProtocolError('TrustFailure', `trust file: key ${name} missing`);
  let b: Uint8Array;
  try {
    b = fromBase64(v);
  } catch {
    throw new ProtocolError('TrustFailure', `trust file: key ${name} is not base64`);
  }
  if (b.length !== 32) throw new ProtocolError('TrustFailure', `trust file: key ${name} must be 32 bytes`);
  return b;
}

/**
 * Parses and checks a trust file: the fleet id must be the hash of the listed keys, so a file
 * whose keys were swapped does not verify (I7).
 */
export function parseTrustFile(json: unknown): PinnedFleet {
  if (typeof json !== 'object' || json === null) throw new ProtocolError('TrustFailure', 'trust file: not an object');
  const t = json as Record<string, unknown>;
  if (t.version !== 1 || t.mode !== 'pinned') throw new ProtocolError('TrustFailure', 'trust file: unsupported version or mode');
  const k = t.keys as Record<string, unknown> | undefined;
  if (typeof k !== 'object' || k === null) throw new ProtocolError('TrustFailure', 'trust file: keys missing');
  const keys: FleetPublicKeys = { opaque: key32(k.opaque, 'opaque'), hpke: key32(k.hpke, 'hpke'), sign: key32(k.sign, 'sign') };
  if (typeof t.fleetId !== 'string') throw new ProtocolError('TrustFailure', 'trust file: fleet id missing');
  let claimed: Uint8Array;
  try {
    claimed = fromHex(t.fleetId);
  } catch {
    throw new ProtocolError('TrustFailure', 'trust file: fleet id is not hex');
  }
  const fleetId = fleetIdOf(keys);
  if (!bytesEqual(claimed, fleetId)) throw new ProtocolError('TrustFailure', 'trust file: fleet id does not match its keys');
  const routes = Array.isArray(t.routes) ? t.routes : [];
  const parsedRoutes: RouteRange[] = routes.map((r: unknown) => {
    if (typeof r !== 'object' || r === null) throw new ProtocolError('TrustFailure', 'trust file: bad route range');
    const { from, to } = r as Record<string, unknown>;
    if (typeof from !== 'number' || typeof to !== 'number' || !Number.isInteger(from) || !Number.isInteger(to) || from < 0 || to > 0xffff || from > to) throw new ProtocolError('TrustFailure', 'trust file: bad route range');
    return { from, to };
  });
  if (parsedRoutes.length === 0) throw new ProtocolError('TrustFailure', 'trust file: no route ranges');
  return { fleetId, keys, routes: parsedRoutes };
}
