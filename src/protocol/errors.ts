/**
 * Stable error codes. The CLI maps them to exit codes (src/cli/exit-codes.ts) and the HTTP layer
 * to status codes (src/frontend/errors.ts), each in one place. Messages never carry secrets.
 */
export const ERROR_CODES = [
  'Malformed',
  'TooLarge',
  'UnsupportedVersion',
  'UnknownMessageType',
  'BadRequest',
  'Unauthorized',
  'RateLimited',
  'AccountMismatch',
  'WrongFleet',
  'OutOfRange',
  'NotRegistered',
  'AlreadyRegistered',
  'Locked',
  'RegistrationLimit',
  'StaleState',
  'Replay',
  'BadSessionMac',
  'WrongPassword',
  'StaleProof',
  'Unavailable',
  'OutcomeUnknown',
  'NotLeader',
  'Halted',
  'TrustFailure',
  'Internal',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export function isErrorCode(v: unknown): v is ErrorCode {
  return typeof v === 'string' && (ERROR_CODES as readonly string[]).includes(v);
}

/** An error with a stable code and a message that is safe to show and log. */
export class ProtocolError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'ProtocolError';
  }
}
