/**
 * The client's list (DESIGN section 6, I7): a good bundle verifies; each check alone flipped is
 * refused with its own code, and no Vault exists for it, so nothing can be sent to the fleet.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toBase64, utf8 } from '../../src/crypto/bytes.js';
import { sha256 } from '../../src/crypto/sha256.js';
import { BundleError, memoryStateStore, vaultFromBundle, verifyBundle, type BundleErrorCode, type ValidatorTrust } from '../../src/client/bundle.js';
import type { Transport } from '../../src/client/transport.js';
import { bundleToJson, type ParsedBundle } from '../../src/protocol/bundle.js';
import { countersignInput, formatSignedStatement, parseSignedStatement } from '../../src/protocol/statement.js';
import { ed25519PublicKey, ed25519Sign } from '../../src/crypto/server.js';
import { formatNote, formatTlogProof, parseNote, parseTlogProof, sign, SIGNATURE_TYPE_COSIGNATURE_V1, type NoteSignature, type SignerKey } from '../../src/protocol/tlog/index.js';
import { DAY, makeWorld, signer, type World } from '../helpers/validator-world.js';

let w: World;
let good: ParsedBundle;
beforeAll(async () => {
  w = await makeWorld();
  good = (await w.publish()).bundle;
});
afterAll(async () => w?.close());

type Json = Record<string, unknown>;

/** The validator's attestation key, to make statements only a misbehaving validator would sign. */
function attestationKey(): SignerKey {
  return w.attestationKey;
}

function json(b: ParsedBundle = good): Json {
  return bundleToJson(b);
}

function flipByte(b: Uint8Array, i = b.length - 1): Uint8Array {
  const c = b.slice();
  c[i] = c[i]! ^ 0x01;
  return c;
}

/** The note with signature `k` (by position) changed by `f`. */
function mutateSignature(note: string, k: number, f: (s: NoteSignature) => NoteSignature): string {
  const n = parseNote(note);
  return formatNote({ text: n.text, signatures: n.signatures.map((s, i) => (i === k ? f(s) : s)) });
}

function withCheckpoint(j: Json, checkpoint: string): Json {
  const p = parseTlogProof(j.proof as string);
  return { ...j, proof: formatTlogProof({ ...p, checkpoint }) };
}

const spy = (): Transport & { sent: number } => {
  const t = {
    sent: 0,
    async send() {
      t.sent++;
      return { type: 'Error' as const, code: 'Unavailable' as const, message: 'spy' };
    },
  };
  return t;
};

/** Verifies with a fresh client state; returns 'ok' or the code, and checks that no Vault came out. */
async function codeOf(bundle: unknown, o: { trust?: ValidatorTrust; now?: number; expectedFleetId?: Uint8Array } = {}): Promise<BundleErrorCode | 'ok'> {
  const transport = spy();
  try {
    await vaultFromBundle({ bundle, trust: o.trust ?? w.trust, store: memoryStateStore(), transport, now: o.now ?? w.now.t, ...(o.expectedFleetId ? { expectedFleetId: o.expectedFleetId } : {}) });
    return 'ok';
  } catch (e) {
    if (!(e instanceof BundleError)) throw e;
    expect(e.protocolCode).toBe('TrustFailure');
    return e.code;
  } finally {
    // I7: nothing reached the fleet, whatever the outcome of verification.
    expect(transport.sent).toBe(0);
  }
}

describe('a good bundle', () => {
  it('verifies and yields the statement\'s fleet keys and routes', async () => {
    const v = await verifyBundle(good, w.trust, memoryStateStore(), { now: w.now.t, expectedFleetId: w.fleet.hsm.status().fleetId! });
    expect(v.fleet.keys).toEqual(w.fleet.keys);
    expect(v.fleet.routes).toEqual(w.fleet.deployment.routes);
    expect(v.cosigners).toHaveLength(2);
    expect(await codeOf(json())).toBe('ok');
  });
});

describe('each check alone flipped is refused with its own code, and nothing is sent', () => {
  it('Malformed: not a bundle', async () => {
    expect(await codeOf({})).toBe('Malformed');
    expect(await codeOf({ ...json(), statement: 'x' })).toBe('Malformed');
    expect(await codeOf({ ...json(), extra: 1 })).toBe('Malformed');
  });

  it('BadOperatorSignature: bad, or by another operator key', async () => {
    expect(await codeOf({ ...json(), statement: mutateSignature(good.statement, 0, (s) => ({ ...s, signature: flipByte(s.signature) })) })).toBe('BadOperatorSignature');
    const impostor = await signer(w.operator.name);
    const s = parseSignedStatement(good.statement);
    const [opSig] = parseNote(await sign(s.text, [impostor])).signatures;
    expect(await codeOf({ ...json(), statement: formatSignedStatement({ ...s, operatorSignature: opSig! }) })).toBe('BadOperatorSignature');
  });

  it('MissingValidatorSignature and BadValidatorSignature', async () => {
    const s = parseSignedStatement(good.statement);
    expect(await codeOf({ ...json(), statement: formatNote({ text: s.text, signatures: [s.operatorSignature] }) })).toBe('MissingValidatorSignature');
    const other = await signer('validator.example/attestation');
    const [vs] = parseNote(await sign(s.text, [other])).signatures;
    expect(await codeOf({ ...json(), statement: formatSignedStatement({ ...s, validatorSignature: vs! }) })).toBe('MissingValidatorSignature');
    expect(await codeOf({ ...json(), statement: mutateSignature(good.statement, 1, (x) => ({ ...x, signature: flipByte(x.signature, 3) })) })).toBe('BadValidatorSignature');
  });

  it('MissingCountersignature and BadCountersignature', async () => {
    const j = json();
    delete j.countersignature;
    expect(await codeOf(j)).toBe('MissingCountersignature');
    expect(await codeOf({ ...json(), countersignature: toBase64(flipByte(good.countersignature!)) })).toBe('BadCountersignature');
  });

  it('UnknownLogKey: a checkpoint signed by a key the client does not pin', async () => {
    const p = parseTlogProof(good.proof);
    const text = parseNote(p.checkpoint).text;
    const rogue = await signer('validator.example/log');
    expect(await codeOf(withCheckpoint(json(), await sign(text, [rogue])))).toBe('UnknownLogKey');
  });

  it('BadCheckpointSignature: the log\'s own line does not verify', async () => {
    const p = parseTlogProof(good.proof);
    expect(await codeOf(withCheckpoint(json(), mutateSignature(p.checkpoint, 0, (s) => ({ ...s, signature: flipByte(s.signature, 5) }))))).toBe('BadCheckpointSignature');
  });

  it('WrongLog: a checkpoint of another origin', async () => {
    const trust = { ...w.trust, log: { ...w.trust.log, origin: 'other.example/log' } };
    expect(await codeOf(json(), { trust })).toBe('WrongLog');
  });

  it('BadCosignature: a pinned witness\'s cosignature does not verify', async () => {
    const p = parseTlogProof(good.proof);
    expect(await codeOf(withCheckpoint(json(), mutateSignature(p.checkpoint, 1, (s) => ({ ...s, signature: flipByte(s.signature) }))))).toBe('BadCosignature');
  });

  it('FleetIdMismatch: a statement whose fleet id is not its keys\' hash', async () => {
    // Only reachable with a validator that signs it, and a countersignature under the listed key.
    const seed = sha256(utf8('a sign key'));
    const s = parseSignedStatement(good.statement);
    const text = s.text.replace(/^key sign ed25519 .*$/m, `key sign ed25519 ${toBase64(ed25519PublicKey(seed))}`);
    const note = await sign(text, [w.operator, attestationKey()]);
    const signed = parseSignedStatement(note);
    const cs = ed25519Sign(seed, countersignInput(signed.statement.fleetId, text, signed.validatorSignature!));
    expect(await codeOf({ ...json(), statement: note, countersignature: toBase64(cs) })).toBe('FleetIdMismatch');
  });

  it('WrongFleet: the server fronts another fleet than the bundle names', async () => {
    expect(await codeOf(json(), { expectedFleetId: sha256(utf8('another fleet')) })).toBe('WrongFleet');
  });

  it('NotYetValid and Expired: outside the validity window', async () => {
    const s = parseSignedStatement(good.statement).statement;
    expect(await codeOf(json(), { now: s.notBefore - 1 })).toBe('NotYetValid');
    expect(await codeOf(json(), { now: s.notAfter + 1 })).toBe('Expired');
  });

  it('MeasurementNotAllowed: HSM code outside the allowlist', async () => {
    expect(await codeOf(json(), { trust: { ...w.trust, measurements: [sha256(utf8('another build'))] } })).toBe('MeasurementNotAllowed');
  });

  it('InclusionProof: truncated, extended, wrong node, wrong index', async () => {
    const p = parseTlogProof(good.proof);
    const with_ = (q: Partial<typeof p>) => ({ ...json(), proof: formatTlogProof({ ...p, ...q }) });
    // A second entry so that the proof has nodes.
    expect(p.proof.length).toBeGreaterThanOrEqual(0);
    const { bundle: second } = await w.publish();
    const p2 = parseTlogProof(second.proof);
    expect(p2.proof.length).toBeGreaterThan(0);
    const with2 = (q: Partial<typeof p2>) => ({ ...json(second), proof: formatTlogProof({ ...p2, ...q }) });
    expect(await codeOf(with2({ proof: p2.proof.slice(0, -1) }))).toBe('InclusionProof');
    expect(await codeOf(with2({ proof: [...p2.proof, sha256(utf8('x'))] }))).toBe('InclusionProof');
    expect(await codeOf(with2({ proof: [flipByte(p2.proof[0]!), ...p2.proof.slice(1)] }))).toBe('InclusionProof');
    expect(await codeOf(with2({ index: p2.index === 0 ? 1 : 0 }))).toBe('InclusionProof');
    expect(await codeOf(with_({ index: 7 }))).toBe('InclusionProof');
  });

  it('WitnessQuorum: too few cosignatures, or cosignatures older than 7 days', async () => {
    const p = parseTlogProof(good.proof);
    const n = parseNote(p.checkpoint);
    expect(await codeOf(withCheckpoint(json(), formatNote({ text: n.text, signatures: n.signatures.slice(0, 2) })))).toBe('WitnessQuorum');
    // A cosignature by an unknown witness does not count.
    const stranger = await signer('witness9.example/w', SIGNATURE_TYPE_COSIGNATURE_V1, w.clock);
    const [extra] = parseNote(await sign(n.text, [stranger])).signatures;
    expect(await codeOf(withCheckpoint(json(), formatNote({ text: n.text, signatures: [...n.signatures.slice(0, 2), extra!] })))).toBe('WitnessQuorum');
    // Still within the statement's window, but the witnesses last cosigned 8 days ago.
    expect(await codeOf(json(), { now: w.now.t + 8 * DAY })).toBe('WitnessQuorum');
    expect(await codeOf(json(), { now: w.now.t + 6 * DAY })).toBe('ok');
  });

  it('WindowTooLong: the client holds the validator to the 30-day policy too', async () => {
    const s = parseSignedStatement(good.statement);
    const text = s.text.replace(/^not-after .*$/m, `not-after ${new Date((s.statement.notBefore + 31 * DAY) * 1000).toISOString().replace('.000Z', 'Z')}`);
    const note = await sign(text, [w.operator, attestationKey()]);
    const c = w.fleet.hsm.countersign(text, parseSignedStatement(note).validatorSignature!);
    if (c.type !== 'Countersigned') throw new Error(c.type);
    // Its inclusion proof is for the logged statement, so the window check must come first.
    expect(await codeOf({ ...json(), statement: note, countersignature: toBase64(c.signature) })).toBe('WindowTooLong');
  });
});
