/** The one place error codes become exit codes (documented in `bkv --help` and the README). */
import type { ErrorCode } from '../protocol/errors.js';

export const EXIT = {
  ok: 0,
  usage: 2,
  wrongPassword: 3,
  locked: 4,
  notRegistered: 5,
  unavailable: 6,
  trust: 7,
  internal: 1,
} as const;

export const EXIT_CODES_HELP = `Exit codes:
  0  success
  1  internal error
  2  usage or input error (also: already registered, stale or replayed request)
  3  wrong password (stderr says how many guesses are left)
  4  record locked or destroyed (or re-registration limit reached)
  5  not registered
  6  the vault is unavailable (also: outcome unknown, rate limited)
  7  the fleet's keys failed verification`;

export function exitCodeOf(code: ErrorCode): number {
  switch (code) {
    case 'WrongPassword':
      return EXIT.wrongPassword;
    case 'Locked':
    case 'RegistrationLimit':
      return EXIT.locked;
    case 'NotRegistered':
      return EXIT.notRegistered;
    case 'Unavailable':
    case 'NotLeader':
    case 'Halted':
    case 'OutcomeUnknown':
    case 'RateLimited':
      return EXIT.unavailable;
    case 'TrustFailure':
    case 'WrongFleet':
      return EXIT.trust;
    case 'Internal':
      return EXIT.internal;
    default:
      return EXIT.usage;
  }
}
