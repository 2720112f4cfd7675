/** The fleet countersigns only a statement that lists its own fleet id, keys and routes. */
import { describe, expect, it } from 'vitest';
import { utf8 } from '../../src/crypto/bytes.js';
import { ed25519Verify } from '../../src/crypto/server.js';
import { sha256 } from '../../src/crypto/sha256.js';
import { fleetIdOf } from '../../src/protocol/fleet.js';
import { countersignInput, formatStatement, NO_PREVIOUS, type FleetKeysStatement } from '../../src/protocol/statement.js';
import type { NoteSignature } from '../../src/protocol/tlog/index.js';
import { makeFleet, MEASUREMENT, T0 } from '../helpers/validator-world.js';

const validatorSig: NoteSignature = { name: 'validator.example/attestation', keyId: 0x01020304, signature: new Uint8Array(64).fill(7) };

describe('HsmCore.countersign', async () => {
  const fleet = await makeFleet(() => T0);
  const fleetId = fleetIdOf(fleet.keys);
  const base: FleetKeysStatement = {
    operator: 'op.example/bkv',
    fleetId,
    seq: 1,
    prev: NO_PREVIOUS,
    notBefore: T0,
    notAfter: T0 + 1000,
    routes: fleet.deployment.routes,
    evidence: sha256(utf8('evidence')),
    measurement: MEASUREMENT,
    keys: fleet.keys,
  };

  it('countersigns its own statement over label, fleet id, SHA-256(statement) and the validator signature', () => {
    const text = formatStatement(base);
    const r = fleet.hsm.countersign(text, validatorSig);
    expect(r.type).toBe('Countersigned');
    if (r.type !== 'Countersigned') return;
    expect(ed25519Verify(fleet.keys.sign, countersignInput(fleetId, text, validatorSig), r.signature)).toBe(true);
    // Bound to the validator's signature: another one does not verify.
    const other = { ...validatorSig, signature: new Uint8Array(64).fill(8) };
    expect(ed25519Verify(fleet.keys.sign, countersignInput(fleetId, text, other), r.signature)).toBe(false);
  });

  it('refuses another fleet, other keys, other routes, and what is not a statement', async () => {
    const other = await makeFleet(() => T0);
    expect(fleet.hsm.countersign(formatStatement({ ...base, fleetId: fleetIdOf(other.keys), keys: other.keys }), validatorSig).type).toBe('WrongFleet');
    expect(fleet.hsm.countersign(formatStatement({ ...base, keys: { ...fleet.keys, hpke: other.keys.hpke } }), validatorSig).type).toBe('WrongKeys');
    expect(fleet.hsm.countersign(formatStatement({ ...base, routes: [{ from: 0, to: 0x7fff }] }), validatorSig).type).toBe('WrongRoutes');
    expect(fleet.hsm.countersign('hello\n', validatorSig).type).toBe('Malformed');
    expect(fleet.hsm.countersign(formatStatement(base), { ...validatorSig, signature: new Uint8Array(10) }).type).toBe('Malformed');
  });
});
