/**
 * The validator's list (DESIGN section 6): every check, each alone flipped on an otherwise good
 * submission, is refused with its own code, and a refused submission appends nothing to the log.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bytesEqual, utf8 } from '../../src/crypto/bytes.js';
import { sha256 } from '../../src/crypto/sha256.js';
import { evidenceDigest, formatEvidence, MEASUREMENT_METHOD } from '../../src/protocol/evidence.js';
import { fleetIdOf } from '../../src/protocol/fleet.js';
import { formatStatement, NO_PREVIOUS, parseSignedStatement, statementLeafHash, type FleetKeysStatement } from '../../src/protocol/statement.js';
import { sign, type SignerKey } from '../../src/protocol/tlog/index.js';
import { ValidatorError } from '../../src/validator/errors.js';
import { DAY, MEASUREMENT, makeWorld, signer, type World } from '../helpers/validator-world.js';

let w: World;
beforeAll(async () => {
  w = await makeWorld();
});
afterAll(async () => w?.close());

interface Draft {
  statement: FleetKeysStatement;
  evidence: Uint8Array | undefined;
  signer: SignerKey;
}

/** A good next submission for the world's fleet, before any mutation. */
function good(): Draft {
  const d = w.fleet.deployment;
  const evidence = formatEvidence({ fleetId: fleetIdOf(d.keys), keys: d.keys, routes: d.routes, measurement: { method: MEASUREMENT_METHOD, digest: MEASUREMENT }, members: d.members, policy: d.policy, attestations: [] });
  const head = w.validator.chainHead();
  return {
    signer: w.operator,
    evidence,
    statement: {
      operator: w.operator.name,
      fleetId: fleetIdOf(d.keys),
      seq: (head?.seq ?? 0) + 1,
      prev: head ? statementLeafHash(head.entry) : NO_PREVIOUS,
      notBefore: w.now.t - 60,
      notAfter: w.now.t + 29 * DAY,
      routes: d.routes,
      evidence: evidenceDigest(evidence),
      measurement: MEASUREMENT,
      keys: d.keys,
    },
  };
}

async function submit(d: Draft): Promise<string> {
  const note = await sign(formatStatement(d.statement), [d.signer]);
  const before = w.validator.tiles.size();
  try {
    await w.validator.submit(note, d.evidence);
    return 'ok';
  } catch (e) {
    if (!(e instanceof ValidatorError)) throw e;
    // A refusal changes nothing (I8).
    expect(w.validator.tiles.size()).toBe(before);
    return e.code;
  }
}

/** Re-signs the evidence for a statement changed in ways the evidence must follow. */
function withEvidence(d: Draft, change: (e: Record<string, unknown>) => void): Draft {
  const json = JSON.parse(new TextDecoder().decode(d.evidence)) as Record<string, unknown>;
  change(json);
  const evidence = utf8(JSON.stringify(json));
  return { ...d, evidence, statement: { ...d.statement, evidence: evidenceDigest(evidence) } };
}

describe('the validator refuses each bad submission with its own code', () => {
  it('accepts the good submission (the baseline every flip starts from)', async () => {
    expect(await submit(good())).toBe('ok');
    expect(await submit(good())).toBe('ok');
  });

  it('UnknownOperator: a statement signed by another key', async () => {
    const other = await signer(w.operator.name); // same name, other key: another key ID
    expect(await submit({ ...good(), signer: other })).toBe('UnknownOperator');
    const stranger = await signer('stranger.example/op');
    const d = good();
    expect(await submit({ ...d, signer: stranger, statement: { ...d.statement, operator: stranger.name } })).toBe('UnknownOperator');
  });

  it('BadOperatorSignature: the operator key\'s line does not verify', async () => {
    const note = await sign(formatStatement(good().statement), [w.operator]);
    const lines = note.split('\n');
    const sigLine = lines[lines.length - 2]!;
    const tampered = note.replace(sigLine, sigLine.slice(0, -6) + (sigLine.slice(-6, -5) === 'A' ? 'B' : 'A') + sigLine.slice(-5));
    await expect(w.validator.submit(tampered, good().evidence)).rejects.toMatchObject({ code: 'BadOperatorSignature' });
  });

  it('Malformed: not a statement, or already signed by a validator', async () => {
    await expect(w.validator.submit('hello\n\n— x AAAAAAA=\n', good().evidence)).rejects.toMatchObject({ code: 'Malformed' });
    const text = formatStatement(good().statement);
    const twice = await sign(text, [w.operator, await signer('validator.example/attestation')]);
    await expect(w.validator.submit(twice, good().evidence)).rejects.toMatchObject({ code: 'Malformed' });
  });

  it('DuplicateSeq: a different statement for a seq already logged', async () => {
    const d = good();
    const head = w.validator.chainHead()!;
    const prevEntry = parseSignedStatement(head.entry).statement;
    expect(await submit({ ...d, statement: { ...d.statement, seq: head.seq, prev: prevEntry.prev, notAfter: d.statement.notAfter - 1 } })).toBe('DuplicateSeq');
  });

  it('a retry of the very statement logged is answered with the logged entry, not appended twice', async () => {
    const d = good();
    const note = await sign(formatStatement(d.statement), [d.signer]);
    const a = await w.validator.submit(note, d.evidence);
    const size = w.validator.tiles.size();
    const b = await w.validator.submit(note, d.evidence);
    expect(b.index).toBe(a.index);
    expect(b.entry).toBe(a.entry);
    expect(w.validator.tiles.size()).toBe(size);
  });

  it('BadSeq: seq is not previous + 1', async () => {
    const d = good();
    expect(await submit({ ...d, statement: { ...d.statement, seq: d.statement.seq + 1 } })).toBe('BadSeq');
  });

  it('WrongPrev: prev is not the leaf hash of the previous statement', async () => {
    const d = good();
    expect(await submit({ ...d, statement: { ...d.statement, prev: sha256(d.statement.prev) } })).toBe('WrongPrev');
    expect(await submit({ ...d, statement: { ...d.statement, prev: NO_PREVIOUS } })).toBe('WrongPrev');
  });

  it('WindowTooLong: longer than the policy\'s 30 days', async () => {
    const d = good();
    expect(await submit({ ...d, statement: { ...d.statement, notAfter: d.statement.notBefore + 30 * DAY + 1 } })).toBe('WindowTooLong');
    expect(await submit({ ...d, statement: { ...d.statement, notAfter: d.statement.notBefore + 30 * DAY } })).toBe('ok');
  });

  it('BadWindow and Expired', async () => {
    const d = good();
    expect(await submit({ ...d, statement: { ...d.statement, notBefore: d.statement.notAfter + 1 } })).toBe('BadWindow');
    expect(await submit({ ...d, statement: { ...d.statement, notBefore: w.now.t - 10 * DAY, notAfter: w.now.t - 1 } })).toBe('Expired');
    expect(await submit({ ...d, statement: { ...d.statement, notBefore: w.now.t + 31 * DAY, notAfter: w.now.t + 40 * DAY } })).toBe('BadWindow');
  });

  it('FleetIdMismatch: the fleet id is not the hash of the listed keys', async () => {
    const d = good();
    const keys = { ...d.statement.keys, hpke: d.statement.keys.sign };
    expect(await submit({ ...d, statement: { ...d.statement, keys } })).toBe('FleetIdMismatch');
  });

  it('EvidenceMissing, EvidenceMismatch, EvidenceInvalid', async () => {
    const d = good();
    expect(await submit({ ...d, evidence: undefined })).toBe('EvidenceMissing');
    expect(await submit({ ...d, evidence: new Uint8Array(0) })).toBe('EvidenceMissing');
    expect(await submit({ ...d, evidence: utf8(new TextDecoder().decode(d.evidence) + ' ') })).toBe('EvidenceMismatch');
    expect(await submit(withEvidence(d, (e) => ((e.routes as unknown[]).length = 0)))).toBe('EvidenceInvalid');
    expect(await submit(withEvidence(d, (e) => (e.fleetId = '00'.repeat(32))))).toBe('EvidenceInvalid');
    expect(await submit(withEvidence(d, (e) => ((e.policy as Record<string, number>).quorum = 2)))).toBe('EvidenceInvalid');
    expect(await submit(withEvidence(d, (e) => ((e.measurement as Record<string, string>).digest = `sha256:${'ab'.repeat(32)}`)))).toBe('EvidenceInvalid');
    expect(await submit(withEvidence(d, (e) => (e.extra = 1)))).toBe('EvidenceInvalid');
    const other = { ...d.statement.keys, opaque: sha256(d.statement.keys.opaque) };
    expect(await submit(withEvidence(d, (e) => ((e.keys as Record<string, string>).opaque = Buffer.from(other.opaque).toString('base64'))))).toBe('EvidenceInvalid');
  });

  it('MeasurementNotAllowed: HSM code that is not an accepted release build', async () => {
    const d = good();
    const digest = sha256(utf8('a build nobody reviewed'));
    const changed = withEvidence(d, (e) => ((e.measurement as Record<string, string>).digest = `sha256:${Buffer.from(digest).toString('hex')}`));
    expect(await submit({ ...changed, statement: { ...changed.statement, measurement: digest } })).toBe('MeasurementNotAllowed');
  });

  it('logs the validator\'s signature second, and chains prev to the logged entry', async () => {
    const head = w.validator.chainHead()!;
    const s = parseSignedStatement(head.entry);
    expect(s.operatorSignature.name).toBe(w.operator.name);
    expect(s.validatorSignature?.name).toBe('validator.example/attestation');
    const d = good();
    expect(bytesEqual(d.statement.prev, statementLeafHash(head.entry))).toBe(true);
  });
});
