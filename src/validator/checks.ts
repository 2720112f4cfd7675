/**
 * The validator's checks of a submitted statement (DESIGN section 6), in order, each failing
 * with its own code: the operator's signature, no second statement for a seq, seq = previous + 1,
 * prev = leaf hash of the previous statement, the validity window within policy, the fleet id of
 * the keys, and the evidence package (present, matching digest, verifying, with an accepted
 * measurement). No I/O: the chain state comes in through `SubmissionContext`.
 */
import { bytesEqual, toHex } from '../crypto/bytes.js';
import { ProtocolError } from '../protocol/errors.js';
import { verifyEvidence } from '../protocol/evidence.js';
import { fleetIdOf } from '../protocol/fleet.js';
import { NO_PREVIOUS, parseSignedStatement, type SignedStatement } from '../protocol/statement.js';
import { TlogError, open, type NoteVerifier } from '../protocol/tlog/index.js';
import { ValidatorError } from './errors.js';

export interface ValidatorPolicy {
  /** The longest validity window accepted (DESIGN section 6: 30 days). */
  readonly maxWindowSeconds: number;
  /** HSM code measurements accepted: those of reproducible builds of tagged releases. */
  readonly measurements: readonly Uint8Array[];
}

export interface ChainHead {
  readonly seq: number;
  /** Leaf hash of the operator's latest logged statement. */
  readonly leaf: Uint8Array;
}

export interface SubmissionContext {
  /** The operator's key: the only key whose statements this validator takes. */
  readonly operator: NoteVerifier;
  /** The operator's latest logged statement, if any. */
  readonly head: ChainHead | undefined;
  /** The logged statement note for a seq, if there is one. */
  readonly logged: (seq: number) => string | undefined;
  readonly policy: ValidatorPolicy;
  /** POSIX seconds. */
  readonly now: number;
}

export type CheckedSubmission =
  | { readonly type: 'New'; readonly signed: SignedStatement }
  /** The very statement (text and operator signature) is logged already: a retry. */
  | { readonly type: 'AlreadyLogged'; readonly signed: SignedStatement; readonly entry: string };

function sameSubmission(logged: string, submitted: SignedStatement): boolean {
  try {
    const l = parseSignedStatement(logged);
    return l.text === submitted.text && bytesEqual(l.operatorSignature.signature, submitted.operatorSignature.signature) && l.operatorSignature.keyId === submitted.operatorSignature.keyId;
  } catch {
    return false;
  }
}

/** Runs every check; throws `ValidatorError` with the code of the first that fails. */
export async function checkSubmission(note: string, evidence: Uint8Array | undefined, ctx: SubmissionContext): Promise<CheckedSubmission> {
  let signed: SignedStatement;
  try {
    signed = parseSignedStatement(note);
  } catch (e) {
    const code = e instanceof ProtocolError && e.code === 'TooLarge' ? 'TooLarge' : 'Malformed';
    throw new ValidatorError(code, (e as Error).message);
  }
  if (signed.validatorSignature) throw new ValidatorError('Malformed', 'submit the statement with the operator\'s signature only');

  // The operator's signature, and only the operator's key is accepted at all.
  const op = signed.operatorSignature;
  if (op.name !== ctx.operator.name || op.keyId !== ctx.operator.keyId) throw new ValidatorError('UnknownOperator', 'the statement is not signed by the operator key this validator serves');
  try {
    await open(note, [ctx.operator]);
  } catch (e) {
    if (e instanceof TlogError) throw new ValidatorError('BadOperatorSignature', 'the operator\'s signature does not verify');
    throw new ValidatorError('Malformed', (e as Error).message);
  }
  const s = signed.statement;

  // No second statement for a seq; the same one again is a retry, answered with what was logged.
  const logged = ctx.logged(s.seq);
  if (logged !== undefined) {
    if (sameSubmission(logged, signed)) return { type: 'AlreadyLogged', signed, entry: logged };
    throw new ValidatorError('DuplicateSeq', `a different statement is logged for seq ${s.seq}`);
  }
  const expectedSeq = (ctx.head?.seq ?? 0) + 1;
  if (s.seq !== expectedSeq) throw new ValidatorError('BadSeq', `seq must be ${expectedSeq}`);
  const expectedPrev = ctx.head?.leaf ?? NO_PREVIOUS;
  if (!bytesEqual(s.prev, expectedPrev)) throw new ValidatorError('WrongPrev', 'prev is not the leaf hash of the operator\'s previous statement');

  // The window: renewed statements, never one that outlives the policy.
  if (s.notAfter < s.notBefore) throw new ValidatorError('BadWindow', 'not-after is before not-before');
  if (s.notAfter - s.notBefore > ctx.policy.maxWindowSeconds) throw new ValidatorError('WindowTooLong', `the validity window is longer than ${ctx.policy.maxWindowSeconds} s`);
  if (s.notAfter <= ctx.now) throw new ValidatorError('Expired', 'the validity window has ended');
  if (s.notBefore > ctx.now + ctx.policy.maxWindowSeconds) throw new ValidatorError('BadWindow', 'not-before is too far in the future');

  if (!bytesEqual(fleetIdOf(s.keys), s.fleetId)) throw new ValidatorError('FleetIdMismatch', 'the fleet id is not the hash of the listed keys');

  if (evidence === undefined || evidence.length === 0) throw new ValidatorError('EvidenceMissing', 'no deployment evidence package came with the statement');
  const ev = verifyEvidence(evidence, s);
  if (!ev.ok) throw new ValidatorError(ev.code, ev.message);
  if (!ctx.policy.measurements.some((m) => bytesEqual(m, s.measurement))) {
    throw new ValidatorError('MeasurementNotAllowed', `HSM code measurement sha256:${toHex(s.measurement)} is not an accepted release build`);
  }
  return { type: 'New', signed };
}
