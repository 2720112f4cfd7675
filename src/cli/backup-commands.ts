/**
 * `bkv backup create|list|restore|verify`, `bkv recovery-code new`, `bkv export-key --age`:
 * encrypted backups from a terminal (DESIGN section 8).
 *
 * The key K comes from one of two places, never from argv:
 * - the vault (`--user --server --trust` and the password from a prompt, stdin or a file), or
 * - a 64-digit recovery code in a file (`--recovery-code-file`), from which K is derived.
 *
 * Output: stdout carries only what a script wants (an archive id, a table, JSON, a code or a
 * key); progress, notes and errors go to stderr. Errors become exit codes in exit-codes.ts.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { deriveAgeKeyPair } from '../backup/age-key.js';
import { createArchive, listArchives, readManifest, readSummary, restoreArchive, verifyArchive } from '../backup/archive.js';
import { BackupError } from '../backup/errors.js';
import type { ArchiveSummary, KeyMode } from '../backup/manifest.js';
import type { ProgressCallback } from '../backup/progress.js';
import { formatRecoveryCode, newRecoveryCode, parseRecoveryCode } from '../backup/recovery-code.js';
import { DirectoryStore, type BackupStore } from '../backup/store.js';
import { openVault, run } from './client-commands.js';
import { backupExitCodeOf } from './exit-codes.js';
import { formatBytes, progressReporter, type ProgressReporter } from './progress-bar.js';
import { InputError, readSecret } from './secrets.js';

interface KeyOptions {
  user?: string;
  server?: string;
  trust?: string;
  trustValidator?: string;
  state?: string;
  passwordStdin?: boolean;
  passwordFile?: string;
  sessionTokenFile?: string;
  recoveryCodeFile?: string;
}

interface StoreOptions {
  store: string;
}

interface OutputOptions {
  json?: boolean;
  quiet?: boolean;
}

// ---- the key ----

/** Where K comes from. A recovery code is checked when the options are read, before any work. */
interface KeySource {
  readonly mode: KeyMode;
  get(): Promise<Uint8Array>;
}

const MAX_CODE_FILE = 4096;

function readRecoveryCodeFile(path: string): Uint8Array {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    throw new InputError('cannot read the recovery code file');
  }
  if (text.length > MAX_CODE_FILE) throw new InputError('the recovery code file is too large to hold a recovery code');
  // The whole file, not its first line: a code written down in groups may span lines.
  return parseRecoveryCode(text);
}

function keySource(o: KeyOptions): KeySource | null {
  const vaultGiven = [o.user, o.server, o.trust, o.trustValidator, o.passwordFile].some((v) => v !== undefined) || o.passwordStdin === true;
  if (o.recoveryCodeFile !== undefined) {
    if (vaultGiven) throw new InputError('give either the vault options (--user, --server, --trust) or --recovery-code-file, not both');
    const key = readRecoveryCodeFile(o.recoveryCodeFile);
    // A copy each time: callers wipe what they get.
    return { mode: 'recovery-code', get: () => Promise.resolve(key.slice()) };
  }
  if (!vaultGiven) return null;
  const { user, server } = o;
  if (user === undefined || server === undefined || (o.trust === undefined && o.trustValidator === undefined)) {
    const missing = [user === undefined ? '--user' : '', server === undefined ? '--server' : '', o.trust === undefined && o.trustValidator === undefined ? '--trust' : ''];
    throw new InputError(`the vault needs ${missing.filter((m) => m !== '').join(' and ')} as well`);
  }
  return {
    mode: 'vault',
    async get() {
      // The password first: a missing one is a usage error before anything goes on the network.
      const password = await readSecret({ stdin: o.passwordStdin, file: o.passwordFile }, 'password');
      const vault = await openVault({ user, server, trust: o.trust, trustValidator: o.trustValidator, state: o.state, sessionTokenFile: o.sessionTokenFile });
      const r = await vault.recover(user, password);
      if (r.failuresBeforeThisLogin > 0) {
        process.stderr.write(`warning: ${r.failuresBeforeThisLogin} failed attempt(s) since the last successful recovery\n`);
      }
      return r.key;
    },
  };
}

function requireKey(o: KeyOptions): KeySource {
  const src = keySource(o);
  if (src === null) throw new InputError('which key? give --user, --server and --trust (the vault), or --recovery-code-file');
  return src;
}

/** K's age identity; K itself is wiped once the identity is derived. */
async function ageKeys(src: KeySource): Promise<{ identity: string; recipient: string }> {
  const key = await src.get();
  try {
    return deriveAgeKeyPair(key);
  } finally {
    key.fill(0);
  }
}

/**
 * Library errors in the CLI's words. A wrong key is the commonest mistake, and the clear summary
 * says which kind of key would work; the library speaks of `overwrite`, the CLI of --overwrite.
 */
function explain(e: unknown, summary: ArchiveSummary, mode: KeyMode): unknown {
  if (e instanceof BackupError && e.code === 'Exists') {
    return new BackupError('Exists', `${e.message.replace(/ \(pass overwrite to replace\)$/, '')}; nothing was restored (pass --overwrite to replace)`, { cause: e });
  }
  if (!(e instanceof BackupError) || e.code !== 'WrongKey') return e;
  const hint =
    summary.keyMode !== mode
      ? summary.keyMode === 'vault'
        ? 'it was made with a vault key: give --user, --server and --trust'
        : 'it was made with a recovery code: give --recovery-code-file'
      : mode === 'vault'
        ? "it was made with another vault key (another user's, or a key registered again since)"
        : 'it was made with another recovery code';
  return new BackupError('WrongKey', `this key does not open archive ${summary.id}: ${hint}`, { cause: e });
}

// ---- stores ----

const STALE_STAGING_MS = 24 * 3600 * 1000;

/**
 * `--store`: a directory, or `s3://bucket/prefix` with the endpoint from BKV_S3_ENDPOINT (for
 * S3-compatible servers; path-style addressing) and credentials and region from the standard
 * AWS environment and config files. The S3 client is loaded only when used: it is large.
 */
async function openStore(spec: string): Promise<BackupStore> {
  if (spec.startsWith('s3://')) {
    const [{ S3Client }, { S3Store, parseS3Url }] = await Promise.all([import('@aws-sdk/client-s3'), import('../backup/s3-store.js')]);
    const { bucket, prefix } = parseS3Url(spec);
    const endpoint = process.env.BKV_S3_ENDPOINT;
    const region = process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? (endpoint ? 'us-east-1' : undefined);
    const client = new S3Client({ ...(region ? { region } : {}), ...(endpoint ? { endpoint, forcePathStyle: true } : {}) });
    return new S3Store({ client, bucket, prefix });
  }
  if (/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(spec)) throw new InputError('--store takes a directory or an s3://bucket/prefix URL');
  return new DirectoryStore(spec);
}

// ---- running ----

/** Runs a command: backup errors get their exit codes here, everything else as in client-commands. */
function runBackup(body: () => Promise<void>): Promise<void> {
  return run(async () => {
    try {
      await body();
    } catch (e) {
      if (!(e instanceof BackupError)) throw e;
      process.stderr.write(`bkv: ${e.message}\n`);
      process.exitCode = backupExitCodeOf(e.code);
    }
  });
}

/**
 * Long work with Ctrl-C (or SIGTERM) turned into a clean cancel: the library stops at the next
 * chunk and removes what it staged, so an interrupted create leaves nothing behind. A second
 * signal falls through to the default and ends the process at once.
 */
async function cancellable<T>(bar: ProgressReporter, work: (signal: AbortSignal, onProgress: ProgressCallback) => Promise<T>): Promise<T> {
  const ac = new AbortController();
  const onSignal = (): void => ac.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    return await work(ac.signal, (p) => bar.update(p));
  } finally {
    bar.stop();
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }
}

function json(v: unknown): void {
  process.stdout.write(`${JSON.stringify(v)}\n`);
}

function note(o: OutputOptions, text: string): void {
  if (!o.quiet && !o.json) process.stderr.write(`${text}\n`);
}

// ---- options ----

function keyOptions(cmd: Command): Command {
  return cmd
    .option('--user <id>', 'vault: user id')
    .option('--server <url>', 'vault: front end URL')
    .option('--trust <file>', 'vault: trust file with the pinned fleet keys')
    .option('--trust-validator <file>', 'vault, bundle mode: pin the validator, witnesses and operator instead of --trust')
    .option('--state <file>', 'vault, bundle mode: what this client has seen (default: <trust-validator file>.state.json)')
    .option('--password-stdin', 'vault: read the password from the first line of stdin')
    .option('--password-file <file>', 'vault: read the password from the first line of a file')
    .option('--session-token-file <file>', 'vault: app session token (JWT) for front ends that require one')
    .option('--recovery-code-file <file>', 'instead of the vault: a file holding the 64-digit recovery code');
}

function storeOption(cmd: Command): Command {
  return cmd.requiredOption('--store <dir-or-url>', 'backup store: a directory, or s3://bucket/prefix (endpoint from BKV_S3_ENDPOINT)');
}

function count(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}

// ---- commands ----

export function registerBackupCommands(program: Command): void {
  const backup = program.command('backup').description('encrypted backups: age archives of files, in a directory or an S3 bucket');

  keyOptions(storeOption(backup.command('create').description('back up files and directories; prints the archive id').argument('<path...>', 'files or directories')))
    .option('--json', 'print the result as JSON')
    .option('--quiet', 'no progress bar or notes')
    .action((paths: string[], o: KeyOptions & StoreOptions & OutputOptions) =>
      runBackup(async () => {
        const src = requireKey(o);
        const store = await openStore(o.store);
        const { recipient } = await ageKeys(src);
        // Staging files of creates that crashed a day or more ago; never one still being written.
        if (store instanceof DirectoryStore) await store.sweepStaging(STALE_STAGING_MS);
        const r = await cancellable(progressReporter('backup ', o), (signal, onProgress) =>
          createArchive(paths, recipient, store, { keyMode: src.mode, signal, onProgress }),
        );
        for (const s of r.skipped) process.stderr.write(`warning: skipped ${s.path} (${s.reason === 'symlink' ? 'a symlink' : 'not a regular file or directory'})\n`);
        const files = r.manifest.entries.filter((e) => e.type === 'file').length;
        const directories = r.manifest.entries.length - files;
        const { id, createdAt, keyMode, archiveBytes } = r.summary;
        if (o.json) {
          json({ id, createdAt, keyMode, files, directories, totalBytes: r.manifest.totalBytes, archiveBytes, skipped: r.skipped });
          return;
        }
        process.stdout.write(`${id}\n`);
        note(o, `created ${id}: ${count(files, 'file', 'files')}, ${count(directories, 'directory', 'directories')}, ${formatBytes(r.manifest.totalBytes)} (${formatBytes(archiveBytes)} encrypted), key: ${keyMode}`);
      }),
    );

  keyOptions(storeOption(backup.command('list').description('list archives: id, time, size, files (with a key), key mode')))
    .option('--json', 'print JSON')
    .action((o: KeyOptions & StoreOptions & OutputOptions) =>
      runBackup(async () => {
        const src = keySource(o);
        const store = await openStore(o.store);
        const archives = await listArchives(store);
        const identity = src === null || archives.length === 0 ? null : (await ageKeys(src)).identity;
        const rows: { id: string; createdAt: string; keyMode: KeyMode; archiveBytes: number; files: number | null; totalBytes: number | null; error?: string }[] = [];
        for (const a of archives) {
          const row = { id: a.id, createdAt: a.createdAt, keyMode: a.keyMode, archiveBytes: a.archiveBytes, files: null as number | null, totalBytes: null as number | null };
          if (identity === null || a.keyMode !== src?.mode) {
            rows.push(row);
            continue;
          }
          try {
            const m = await readManifest(a.id, identity, store);
            rows.push({ ...row, files: m.entries.filter((e) => e.type === 'file').length, totalBytes: m.totalBytes });
          } catch (e) {
            if (!(e instanceof BackupError) || e.code === 'StoreFailed') throw e;
            // Another key (WrongKey) shows '-'; a damaged manifest is flagged, not fatal to the list.
            rows.push(e.code === 'WrongKey' ? row : { ...row, error: e.code });
          }
        }
        if (o.json) return json(rows);
        if (rows.length === 0) return note(o, 'no archives in this store');
        const table = [['ID', 'CREATED', 'SIZE', 'FILES', 'KEY'], ...rows.map((r) => [r.id, r.createdAt, formatBytes(r.archiveBytes), r.error ? `damaged (${r.error})` : r.files === null ? '-' : String(r.files), r.keyMode])];
        const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
        for (const row of table) process.stdout.write(`${row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')}\n`);
      }),
    );

  keyOptions(storeOption(backup.command('restore').description('restore an archive into a directory; replaces no file unless --overwrite').argument('<id>', 'archive id (see backup list)')))
    .requiredOption('--to <dir>', 'destination directory (created if missing)')
    .option('--overwrite', 'replace existing files of the same name')
    .option('--json', 'print the result as JSON')
    .option('--quiet', 'no progress bar or notes')
    .action((id: string, o: KeyOptions & StoreOptions & OutputOptions & { to: string; overwrite?: boolean }) =>
      runBackup(async () => {
        const src = requireKey(o);
        const store = await openStore(o.store);
        const summary = await readSummary(id, store); // An unknown id fails before the password is asked.
        const { identity } = await ageKeys(src);
        const r = await cancellable(progressReporter('restore', o), (signal, onProgress) =>
          restoreArchive(id, identity, store, o.to, { overwrite: o.overwrite === true, signal, onProgress }).catch((e: unknown) => {
            throw explain(e, summary, src.mode);
          }),
        );
        if (o.json) return json({ id, to: o.to, files: r.files, directories: r.directories, bytes: r.bytes });
        note(o, `restored ${id} to ${o.to}: ${count(r.files, 'file', 'files')}, ${count(r.directories, 'directory', 'directories')}, ${formatBytes(r.bytes)}`);
      }),
    );

  keyOptions(storeOption(backup.command('verify').description("decrypt an archive and check every file's hash; writes nothing").argument('<id>', 'archive id (see backup list)')))
    .option('--json', 'print the result as JSON')
    .option('--quiet', 'no progress bar or notes')
    .action((id: string, o: KeyOptions & StoreOptions & OutputOptions) =>
      runBackup(async () => {
        const src = requireKey(o);
        const store = await openStore(o.store);
        const summary = await readSummary(id, store);
        const { identity } = await ageKeys(src);
        const r = await cancellable(progressReporter('verify ', o), (signal, onProgress) =>
          verifyArchive(id, identity, store, { signal, onProgress }).catch((e: unknown) => {
            throw explain(e, summary, src.mode);
          }),
        );
        if (o.json) return json({ id, ok: true, files: r.files, directories: r.directories, bytes: r.bytes });
        note(o, `verified ${id}: ${count(r.files, 'file', 'files')}, ${count(r.directories, 'directory', 'directories')}, ${formatBytes(r.bytes)}; every file matches its SHA-256`);
      }),
    );

  program
    .command('recovery-code')
    .description('64-digit recovery codes (a backup key without the vault)')
    .command('new')
    .description('print a fresh recovery code on stdout; the backup key is derived from it')
    .action(() =>
      runBackup(async () => {
        const { code, key } = newRecoveryCode();
        key.fill(0);
        process.stdout.write(`${formatRecoveryCode(code)}\n`);
        process.stderr.write(
          'This 64-digit code is your backup key: write it down on paper and keep it safe.\n' +
            'Anyone with it can read the backups made with it; without it they cannot be restored.\n' +
            'It is not stored anywhere. Use it with --recovery-code-file FILE (spaces and line breaks are ignored).\n',
        );
      }),
    );

  keyOptions(program.command('export-key').description('print the age identity of the backup key, to decrypt archives with any age tool'))
    .requiredOption('--age', 'print the age X25519 identity (AGE-SECRET-KEY-1...), the only format so far')
    .action((o: KeyOptions) =>
      runBackup(async () => {
        const { identity, recipient } = await ageKeys(requireKey(o));
        process.stdout.write(`${identity}\n`);
        process.stderr.write(
          `warning: this is a secret key: anyone with it can decrypt every archive made with it.\n` +
            `Keep it in a file only you can read, and delete it when done. Its public key is ${recipient}\n` +
            `Use: age -d -i key.txt ARCHIVE.age | tar -x\n`,
        );
      }),
    );
}
