/** The one place error codes become exit codes (documented in `bkv --help` and the README). */
import type { ErrorCode } from '../protocol/errors.js';
import type { BackupErrorCode } from '../backup/errors.js';

export const EXIT = {
  ok: 0,
  usage: 2,
  wrongPassword: 3,
  locked: 4,
  notRegistered: 5,
  unavailable: 6,
  trust: 7,
  wrongKey: 8,
  damaged: 9,
  exists: 10,
  store: 11,
  fileChanged: 12,
  interrupted: 130,
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
  7  the fleet's keys failed verification
  8  backups: the key does not open this archive (another vault key or recovery code)
  9  backups: the archive is altered, cut short, corrupt or not a bkv archive (nothing was written)
  10 backups: restore would replace an existing file (pass --overwrite)
  11 backups: the backup store failed (unreachable, refused, no such bucket)
  12 backups: a file changed while it was being backed up (nothing was stored; try again)
  130 interrupted (Ctrl-C or SIGTERM); nothing was stored or restored`;

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

/** Backup library errors; a mistyped recovery code or an unknown archive id is an input error. */
export function backupExitCodeOf(code: BackupErrorCode): number {
  switch (code) {
    case 'WrongKey':
      return EXIT.wrongKey;
    case 'UnknownFormat':
    case 'Malformed':
    case 'Tampered':
    case 'Truncated':
    case 'HashMismatch':
    case 'UnsafePath':
    case 'UnsupportedEntry':
      return EXIT.damaged;
    case 'Exists':
      return EXIT.exists;
    case 'StoreFailed':
      return EXIT.store;
    case 'FileChanged':
      return EXIT.fileChanged;
    case 'Aborted':
      return EXIT.interrupted;
    case 'NotFound':
    case 'BadRecoveryCode':
    case 'BadArgument':
      return EXIT.usage;
  }
}
