/** `bkv register | recover | status | change-password | delete`: the vault from a terminal. */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { toHex } from '../crypto/bytes.js';
import { parseTrustFile, type PinnedFleet } from '../protocol/fleet.js';
import { ProtocolError } from '../protocol/errors.js';
import { Vault, VaultError } from '../client/vault.js';
import { httpTransport } from '../client/transport.js';
import { openBundleVault } from './bundle-vault.js';
import { BundleError } from '../client/bundle.js';
import { exitCodeOf, EXIT } from './exit-codes.js';
import { InputError, readSecret } from './secrets.js';

export interface CommonOptions {
  server: string;
  trust?: string;
  trustValidator?: string;
  state?: string;
  user: string;
  passwordStdin?: boolean;
  passwordFile?: string;
  sessionTokenFile?: string;
}

function loadTrust(path: string): PinnedFleet {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    throw new VaultError('TrustFailure', `cannot read the trust file ${path}`);
  }
  try {
    return parseTrustFile(json);
  } catch (e) {
    throw new VaultError('TrustFailure', (e as Error).message);
  }
}

/**
 * Before any user data leaves: the fleet the server fronts must be the pinned one (I7). The
 * requests are sealed to the pinned key anyway; this turns a mismatch into a clear exit 7.
 */
async function checkServerFleet(server: string, fleet: PinnedFleet): Promise<void> {
  let res: Response;
  try {
    res = await fetch(`${server.replace(/\/+$/, '')}/v1/fleet`, { signal: AbortSignal.timeout(10_000) });
  } catch {
    throw new VaultError('Unavailable', `cannot reach the vault at ${server}`);
  }
  if (!res.ok) throw new VaultError('Unavailable', `the vault at ${server} answered HTTP ${res.status}`);
  const body = (await res.json().catch(() => ({}))) as { fleetId?: unknown };
  if (body.fleetId !== toHex(fleet.fleetId)) throw new VaultError('TrustFailure', 'the server runs a fleet whose keys are not the pinned ones: nothing was sent');
}

export async function openVault(o: CommonOptions): Promise<Vault> {
  if ((o.trust === undefined) === (o.trustValidator === undefined)) throw new InputError('give exactly one of --trust FILE (pinned fleet keys) and --trust-validator FILE (bundle mode)');
  const token = o.sessionTokenFile ? readFileSync(o.sessionTokenFile, 'utf8').trim() : undefined;
  const transport = httpTransport({ server: o.server, sessionToken: () => token });
  // Bundle mode (DESIGN section 6): the keys come from a bundle that passes every check (I7).
  if (o.trustValidator !== undefined) return openBundleVault(o.server, o.trustValidator, o.state ?? `${o.trustValidator}.state.json`, transport);
  const fleet = loadTrust(o.trust!);
  await checkServerFleet(o.server, fleet);
  return new Vault({ fleet, transport });
}

function password(o: CommonOptions, what = 'password'): Promise<string> {
  return readSecret({ stdin: o.passwordStdin, file: o.passwordFile }, what);
}

function plural(n: number, w: string): string {
  if (n === 1) return `${n} ${w}`;
  return `${n} ${w.endsWith('s') ? `${w}es` : `${w}s`}`;
}

/** Runs a command body and turns errors into a message on stderr and a documented exit code. */
export async function run(body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (e) {
    if (e instanceof VaultError) {
      let msg = `bkv: ${e.message}`;
      if (e.code === 'WrongPassword' && e.guesses) {
        msg += ` (${plural(e.guesses.guessesLeft, 'guess')} left before the key is destroyed)`;
      }
      process.stderr.write(`${msg}\n`);
      process.exitCode = exitCodeOf(e.code);
      return;
    }
    if (e instanceof BundleError) {
      process.stderr.write(`bkv: the fleet's validation bundle failed verification (${e.code}): ${e.message}. Nothing was sent to the fleet.\n`);
      process.exitCode = exitCodeOf(e.protocolCode);
      return;
    }
    if (e instanceof InputError || e instanceof ProtocolError) {
      process.stderr.write(`bkv: ${e.message}\n`);
      process.exitCode = e instanceof ProtocolError ? exitCodeOf(e.code) : EXIT.usage;
      return;
    }
    process.stderr.write(`bkv: internal error: ${(e as Error).message}\n`);
    process.exitCode = EXIT.internal;
  }
}

function common(cmd: Command): Command {
  return cmd
    .requiredOption('--server <url>', 'front end URL, e.g. http://127.0.0.1:8080')
    .option('--trust <file>', 'trust file with the pinned fleet keys (bkv dev writes DIR/trust.json)')
    .option('--trust-validator <file>', 'bundle mode: pin the validator, witnesses and operator instead (bkv dev --validator writes DIR/trust-validator.json)')
    .option('--state <file>', 'bundle mode: what this client has seen (default: <trust-validator file>.state.json)')
    .requiredOption('--user <id>', 'user id')
    .option('--password-stdin', 'read the password from the first line of stdin')
    .option('--password-file <file>', 'read the password from the first line of a file')
    .option('--session-token-file <file>', 'app session token (JWT) for front ends that require one');
}

function parseMaxGuesses(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 255) throw new InputError('--max-guesses must be an integer from 1 to 255');
  return n;
}

export function registerClientCommands(program: Command): void {
  common(program.command('register').description('protect a new backup key with a password'))
    .option('--max-guesses <n>', 'wrong guesses before the key is destroyed (1..255)', '10')
    .option('--print-key', 'print the new backup key (hex) on stdout')
    .action((o: CommonOptions & { maxGuesses: string; printKey?: boolean }) =>
      run(async () => {
        const maxGuesses = parseMaxGuesses(o.maxGuesses);
        const pw = await password(o);
        const vault = await openVault(o);
        const { key } = await vault.register(o.user, pw, { maxGuesses });
        process.stderr.write(`registered: ${o.user} may guess ${plural(maxGuesses, 'time')} before the key is destroyed\n`);
        if (o.printKey) process.stdout.write(`${toHex(key)}\n`);
      }),
    );

  common(program.command('recover').description('recover the backup key with the password; prints it in hex'))
    .action((o: CommonOptions) =>
      run(async () => {
        const pw = await password(o);
        const vault = await openVault(o);
        const r = await vault.recover(o.user, pw);
        if (r.failuresBeforeThisLogin > 0) process.stderr.write(`warning: ${plural(r.failuresBeforeThisLogin, 'failed attempt')} since the last successful recovery\n`);
        process.stdout.write(`${toHex(r.key)}\n`);
      }),
    );

  common(program.command('status').description('registered?, guesses left, failures since the last success'))
    .option('--json', 'print JSON')
    .action((o: CommonOptions & { json?: boolean }) =>
      run(async () => {
        const vault = await openVault(o);
        const s = await vault.status(o.user);
        if (o.json) {
          process.stdout.write(`${JSON.stringify(s)}\n`);
          return;
        }
        const state = s.state === 'active' ? 'registered' : s.state === 'tombstone' ? 'destroyed (locked or deleted)' : 'not registered';
        process.stdout.write(`user: ${o.user}\nstate: ${state}\n`);
        if (s.state === 'active') process.stdout.write(`guesses left: ${s.guessesLeft} of ${s.maxGuesses}\nfailures since last success: ${s.failuresSinceLastSuccess}\n`);
        process.stdout.write(`fleet: ${s.fleetId}\n`);
      }),
    );

  common(program.command('change-password').description('change the password (with --password-stdin: old password on line 1, new on line 2)'))
    .option('--new-password-file <file>', 'read the new password from a file')
    .option('--max-guesses <n>', 'guess limit under the new password (1..255; default: keep the current one)')
    .action((o: CommonOptions & { newPasswordFile?: string; maxGuesses?: string }) =>
      run(async () => {
        const maxGuesses = o.maxGuesses === undefined ? undefined : parseMaxGuesses(o.maxGuesses);
        const oldPw = await password(o, 'current password');
        const newPw = await readSecret({ stdin: o.passwordStdin && !o.newPasswordFile, file: o.newPasswordFile }, 'new password');
        const vault = await openVault(o);
        await vault.changePassword(o.user, oldPw, newPw, maxGuesses === undefined ? {} : { maxGuesses });
        process.stderr.write('password changed\n');
      }),
    );

  common(program.command('delete').description('destroy the backup key in the vault (needs the password)'))
    .action((o: CommonOptions) =>
      run(async () => {
        const pw = await password(o);
        const vault = await openVault(o);
        await vault.delete(o.user, pw);
        process.stderr.write('deleted: the record is now a tombstone\n');
      }),
    );
}
