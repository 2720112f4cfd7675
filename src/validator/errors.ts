/**
 * Why the validator refuses a submission: one code per check of DESIGN section 6, so that an
 * operator (and the tests) can tell which check failed. `httpStatusOfValidatorError` is the one
 * place these become HTTP status codes.
 */
export const VALIDATOR_ERROR_CODES = [
  /** The request or the statement does not parse. */
  'Malformed',
  'TooLarge',
  /** No signature by the operator key this validator serves: the submission is not the operator's. */
  'UnknownOperator',
  /** The operator key's signature line is there but does not verify. */
  'BadOperatorSignature',
  /** `seq` is not the operator's previous seq + 1. */
  'BadSeq',
  /** `prev` is not the leaf hash of the operator's previous statement. */
  'WrongPrev',
  /** A different statement was already logged for this seq. */
  'DuplicateSeq',
  /** not-after - not-before is longer than the policy allows. */
  'WindowTooLong',
  /** not-after before not-before, or not-before too far in the future. */
  'BadWindow',
  /** The window has ended already. */
  'Expired',
  /** The fleet id is not SHA-256 of the listed keys' canonical encoding. */
  'FleetIdMismatch',
  /** No evidence package came with the statement. */
  'EvidenceMissing',
  /** The evidence package's digest is not the one the statement names. */
  'EvidenceMismatch',
  /** The evidence package does not verify (see protocol/evidence.ts). */
  'EvidenceInvalid',
  /** The HSM code measurement is not one this validator accepts. */
  'MeasurementNotAllowed',
  /** The statement is logged, but too few witnesses cosigned a checkpoint yet: retry. */
  'WitnessQuorum',
  'Internal',
] as const;

export type ValidatorErrorCode = (typeof VALIDATOR_ERROR_CODES)[number];

export class ValidatorError extends Error {
  constructor(
    readonly code: ValidatorErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'ValidatorError';
  }
}

export function isValidatorErrorCode(v: unknown): v is ValidatorErrorCode {
  return typeof v === 'string' && (VALIDATOR_ERROR_CODES as readonly string[]).includes(v);
}

export function httpStatusOfValidatorError(code: ValidatorErrorCode): number {
  switch (code) {
    case 'Malformed':
      return 400;
    case 'UnknownOperator':
      return 401;
    case 'BadOperatorSignature':
      return 403;
    case 'TooLarge':
      return 413;
    case 'BadSeq':
    case 'WrongPrev':
    case 'DuplicateSeq':
      return 409;
    case 'WindowTooLong':
    case 'BadWindow':
    case 'Expired':
    case 'FleetIdMismatch':
    case 'EvidenceMissing':
    case 'EvidenceMismatch':
    case 'EvidenceInvalid':
    case 'MeasurementNotAllowed':
      return 422;
    case 'WitnessQuorum':
      return 503;
    case 'Internal':
      return 500;
  }
}
