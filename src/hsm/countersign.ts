/**
 * The fleet's countersignature of a validated statement (DESIGN section 6). The HSM signs with the
 * fleet's `sign` key only a statement that lists its own fleet id, exactly its own keys and its
 * own route ranges, so that the countersignature says "this fleet holds these keys and serves
 * these users" and nothing an operator could choose. It signs over
 * `countersignInput` (label, fleet id, SHA-256 of the statement text, the validator's signature),
 * so one countersignature endorses one validator attestation of one statement.
 *
 * The HSM cannot check the validator's signature (it pins no validator key): the client does,
 * and a countersignature over a forged validator signature verifies for nobody who pins the
 * validator. Pure: no I/O, no clock, no randomness (Ed25519 is deterministic).
 */
import { bytesEqual } from '../crypto/bytes.js';
import { ed25519Sign } from '../crypto/server.js';
import type { FleetPublicKeys } from '../protocol/fleet.js';
import type { RouteRange } from '../protocol/ids.js';
import { countersignInput, fleetKeysEqual, parseStatement, routesEqual, type FleetKeysStatement } from '../protocol/statement.js';
import type { NoteSignature } from '../protocol/tlog/index.js';

export interface CountersigningFleet {
  readonly fleetId: Uint8Array;
  readonly publicKeys: FleetPublicKeys;
  readonly routes: readonly RouteRange[];
  /** The fleet's Ed25519 `sign` seed. */
  readonly signSeed: Uint8Array;
}

export type CountersignResult =
  | { readonly type: 'Countersigned'; readonly signature: Uint8Array }
  | { readonly type: 'NoFleet' }
  | { readonly type: 'Malformed'; readonly message: string }
  /** The statement names another fleet. */
  | { readonly type: 'WrongFleet' }
  /** The statement names this fleet but lists other keys. */
  | { readonly type: 'WrongKeys' }
  /** The statement routes other users to this fleet than the fleet serves. */
  | { readonly type: 'WrongRoutes' };

export function countersignStatement(fleet: CountersigningFleet, statementText: string, validatorSignature: NoteSignature): CountersignResult {
  let s: FleetKeysStatement;
  try {
    s = parseStatement(statementText);
  } catch (e) {
    return { type: 'Malformed', message: (e as Error).message };
  }
  if (validatorSignature.signature.length !== 64) return { type: 'Malformed', message: 'the validator signature must be an Ed25519 signature' };
  // I7: the countersignature vouches for this fleet's own identity, keys and routes only.
  if (!bytesEqual(s.fleetId, fleet.fleetId)) return { type: 'WrongFleet' };
  if (!fleetKeysEqual(s.keys, fleet.publicKeys)) return { type: 'WrongKeys' };
  if (!routesEqual(s.routes, fleet.routes)) return { type: 'WrongRoutes' };
  return { type: 'Countersigned', signature: ed25519Sign(fleet.signSeed, countersignInput(fleet.fleetId, statementText, validatorSignature)) };
}
