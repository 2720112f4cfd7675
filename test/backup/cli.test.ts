/**
 * `bkv backup ...`, `bkv recovery-code new` and `bkv export-key --age` end to end: real `bkv dev`
 * processes, the built CLI in child processes, and Debian's age and GNU tar as outside readers.
 * Run `npm run build` first.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, statSync, writeFileSync, closeSync, writeSync, readSync, lstatSync } from 'node:fs';
import { join, relative } from 'node:path';
import { BKV, bkv, startDev, type DevSystem } from '../helpers/dev.js';
import { hasAgeCli, hasGnuTar, pattern, tempDir } from './helpers.js';

let dev: DevSystem;
let dir: string;
let cleanup: () => Promise<void>;

beforeAll(async () => {
  ({ dir, cleanup } = await tempDir('bkv-backup-cli-'));
  dev = await startDev(join(dir, 'dev'));
  expect(bkv(['register', ...vault('alice'), '--password-stdin'], 'alice pw\n').code).toBe(0);
  makeTree(join(dir, 'docs'));
});
afterAll(async () => {
  await dev?.stop();
  await cleanup?.();
});

const vault = (user: string): string[] => ['--server', dev.url, '--trust', dev.trust, '--user', user];
const alice = (): string[] => [...vault('alice'), '--password-stdin'];

/** A small tree: nested directories, random bytes, an empty file, a read-only file. */
function makeTree(root: string): void {
  mkdirSync(join(root, 'photos', '2024'), { recursive: true });
  mkdirSync(join(root, 'empty-dir'));
  writeFileSync(join(root, 'notes.txt'), 'remember the milk\n');
  writeFileSync(join(root, 'photos', '2024', 'beach.raw'), pattern(300_000, 7));
  writeFileSync(join(root, 'photos', 'empty'), '');
  writeFileSync(join(root, 'readonly.txt'), 'do not edit\n');
  chmodSync(join(root, 'readonly.txt'), 0o444);
}

/** Every path under `root` with its type, permission bits and content hash. */
function snapshot(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (p: string): void => {
    for (const name of readdirSync(p).sort()) {
      const full = join(p, name);
      const st = lstatSync(full);
      const rel = relative(root, full);
      if (st.isDirectory()) {
        out[rel] = `dir ${(st.mode & 0o777).toString(8)}`;
        walk(full);
      } else {
        out[rel] = `file ${(st.mode & 0o777).toString(8)} ${createHash('sha256').update(readFileSync(full)).digest('hex')}`;
      }
    }
  };
  walk(root);
  return out;
}

function newCode(name: string): string {
  const r = bkv(['recovery-code', 'new']);
  expect(r.code).toBe(0);
  const file = join(dir, name);
  writeFileSync(file, r.stdout, { mode: 0o600 });
  return file;
}

describe('bkv backup with the vault', () => {
  let id: string;
  const store = (): string => join(dir, 'store');

  it('create prints the archive id on stdout and nothing else', () => {
    const r = bkv(['backup', 'create', join(dir, 'docs'), ...alice(), '--store', store()], 'alice pw\n');
    expect(r.stderr).toMatch(/created .*4 files, 4 directories/);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{16}\n$/);
    id = r.stdout.trim();
  });

  it('list shows it without a key ("-" files) and with the key (file count)', () => {
    const plain = bkv(['backup', 'list', '--store', store()]);
    expect(plain.code).toBe(0);
    const line = plain.stdout.split('\n').find((l) => l.startsWith(id))!;
    expect(line.split(/\s+/)).toEqual([id, expect.stringMatching(/Z$/), expect.any(String), 'KiB', '-', 'vault']);
    const keyed = bkv(['backup', 'list', '--store', store(), ...alice(), '--json'], 'alice pw\n');
    expect(keyed.code).toBe(0);
    const rows = JSON.parse(keyed.stdout) as { id: string; files: number; keyMode: string; totalBytes: number }[];
    expect(rows).toEqual([expect.objectContaining({ id, files: 4, keyMode: 'vault', totalBytes: 300_000 + 18 + 12 })]);
  });

  it('verify decrypts and checks, writing nothing', () => {
    const r = bkv(['backup', 'verify', id, ...alice(), '--store', store(), '--json'], 'alice pw\n');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ id, ok: true, files: 4, directories: 4, bytes: 300_030 });
  });

  it('restore to a new directory gives identical files, modes included', () => {
    const to = join(dir, 'restored');
    const r = bkv(['backup', 'restore', id, '--to', to, ...alice(), '--store', store()], 'alice pw\n');
    expect(r.stderr).toMatch(/restored/);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('');
    expect(snapshot(join(to, 'docs'))).toEqual(snapshot(join(dir, 'docs')));
  });

  it('restore refuses to overwrite (exit 10) unless --overwrite', () => {
    const to = join(dir, 'restored');
    writeFileSync(join(to, 'docs', 'notes.txt'), 'changed since\n');
    const r = bkv(['backup', 'restore', id, '--to', to, ...alice(), '--store', store()], 'alice pw\n');
    expect(r.code).toBe(10);
    expect(r.stderr).toMatch(/would overwrite docs\/notes\.txt.*--overwrite/);
    expect(readFileSync(join(to, 'docs', 'notes.txt'), 'utf8')).toBe('changed since\n');
    const o = bkv(['backup', 'restore', id, '--to', to, ...alice(), '--store', store(), '--overwrite', '--json'], 'alice pw\n');
    expect(o.code).toBe(0);
    expect(JSON.parse(o.stdout)).toMatchObject({ id, files: 4, directories: 4 });
    expect(readFileSync(join(to, 'docs', 'notes.txt'), 'utf8')).toBe('remember the milk\n');
  });

  it('a wrong password is exit 3 with no output and nothing restored', () => {
    const to = join(dir, 'wrong-pw');
    const r = bkv(['backup', 'restore', id, '--to', to, ...alice(), '--store', store()], 'not the password\n');
    expect(r.code).toBe(3);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/wrong password.*guesses? left/);
    expect(existsSync(to)).toBe(false);
    const c = bkv(['backup', 'create', join(dir, 'docs'), ...alice(), '--store', join(dir, 'other-store')], 'nope\n');
    expect(c.code).toBe(3);
    expect(c.stdout).toBe('');
    expect(existsSync(join(dir, 'other-store'))).toBe(false);
  });

  it('secrets are refused on the command line: no --password option exists', () => {
    const r = bkv(['backup', 'list', '--store', store(), ...vault('alice'), '--password', 'alice pw']);
    expect(r.code).toBe(2);
    expect(r.stderr).not.toContain('alice pw');
  });

  it('export-key --age prints the identity; age -d and tar -x restore the files', () => {
    if (!hasAgeCli || !hasGnuTar) return;
    const r = bkv(['export-key', '--age', ...alice()], 'alice pw\n');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^AGE-SECRET-KEY-1[0-9A-Z]{58}\n$/);
    expect(r.stderr).toMatch(/secret/);
    const key = join(dir, 'key.txt');
    writeFileSync(key, r.stdout, { mode: 0o600 });
    const out = join(dir, 'age-out');
    mkdirSync(out);
    execFileSync('sh', ['-c', 'age -d -i "$1" "$2" | tar -x -C "$3"', 'sh', key, join(store(), `${id}.age`), out]);
    expect(snapshot(join(out, 'docs'))).toEqual(snapshot(join(dir, 'docs')));
  });
});

describe('bkv backup with a recovery code', () => {
  const store = (): string => join(dir, 'rc-store');
  let code: string;
  let id: string;

  it('recovery-code new prints 64 digits in groups on stdout and the warning on stderr', () => {
    const r = bkv(['recovery-code', 'new']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^[0-9]{4}( [0-9]{4}){15}\n$/);
    expect(r.stderr).toMatch(/write it down/);
    code = newCode('code.txt');
  });

  it('round trip: create --json, list, restore', () => {
    const c = bkv(['backup', 'create', join(dir, 'docs'), '--recovery-code-file', code, '--store', store(), '--json']);
    expect(c.code).toBe(0);
    const created = JSON.parse(c.stdout) as { id: string; keyMode: string; files: number; directories: number; totalBytes: number; archiveBytes: number; skipped: unknown[] };
    expect(created).toMatchObject({ keyMode: 'recovery-code', files: 4, directories: 4, totalBytes: 300_030, skipped: [] });
    id = created.id;
    expect(statSync(join(store(), `${id}.age`)).size).toBe(created.archiveBytes);
    const l = bkv(['backup', 'list', '--store', store(), '--json']);
    expect(JSON.parse(l.stdout)).toEqual([{ id, createdAt: expect.any(String), keyMode: 'recovery-code', archiveBytes: created.archiveBytes, files: null, totalBytes: null }]);
    const to = join(dir, 'rc-restored');
    const r = bkv(['backup', 'restore', id, '--to', to, '--recovery-code-file', code, '--store', store(), '--quiet']);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    expect(snapshot(join(to, 'docs'))).toEqual(snapshot(join(dir, 'docs')));
  });

  it('a code written on several lines with dashes still works', () => {
    const digits = readFileSync(code, 'utf8').replace(/\s/g, '');
    const messy = join(dir, 'messy-code.txt');
    writeFileSync(messy, `${digits.slice(0, 32).replace(/(.{8})/g, '$1-')}\n${digits.slice(32)}\n`);
    expect(bkv(['backup', 'verify', id, '--recovery-code-file', messy, '--store', store(), '--quiet']).code).toBe(0);
  });

  it('a mistyped code is a clear exit 2 before the store is even opened', () => {
    const digits = readFileSync(code, 'utf8').replace(/\s/g, '');
    const typo = join(dir, 'typo.txt');
    writeFileSync(typo, digits.slice(0, 10) + ((Number(digits[10]) + 1) % 10) + digits.slice(11));
    const r = bkv(['backup', 'restore', id, '--to', join(dir, 'typo-out'), '--recovery-code-file', typo, '--store', join(dir, 'no-such-store')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/typo/);
    expect(r.stderr).not.toContain(digits.slice(0, 8));
    expect(existsSync(join(dir, 'typo-out'))).toBe(false);
    expect(existsSync(join(dir, 'no-such-store'))).toBe(false);
    writeFileSync(typo, digits.slice(0, 63));
    expect(bkv(['backup', 'verify', id, '--recovery-code-file', typo, '--store', store()]).stderr).toMatch(/64 digits \(found 63\)/);
  });

  it('another code (exit 8) or the vault key on a recovery-code archive says which key is needed', () => {
    const other = newCode('other.txt');
    const r = bkv(['backup', 'verify', id, '--recovery-code-file', other, '--store', store()]);
    expect(r.code).toBe(8);
    expect(r.stderr).toMatch(/another recovery code/);
    const v = bkv(['backup', 'verify', id, ...alice(), '--store', store()], 'alice pw\n');
    expect(v.code).toBe(8);
    expect(v.stderr).toMatch(/made with a recovery code: give --recovery-code-file/);
  });

  it('usage errors: no key, both keys, half the vault options, an unknown id', () => {
    expect(bkv(['backup', 'verify', id, '--store', store()]).stderr).toMatch(/which key/);
    expect(bkv(['backup', 'verify', id, '--store', store(), '--recovery-code-file', code, '--user', 'alice']).code).toBe(2);
    expect(bkv(['backup', 'verify', id, '--store', store(), '--user', 'alice']).stderr).toMatch(/--server and --trust/);
    const unknown = bkv(['backup', 'verify', '20250101T000000Z-0000000000000000', '--store', store(), '--recovery-code-file', code]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/no archive/);
    expect(bkv(['backup', 'verify', '../etc', '--store', store(), '--recovery-code-file', code]).code).toBe(2);
    expect(bkv(['backup', 'list', '--store', 'ftp://x/y']).code).toBe(2);
  });

  it('a tampered or truncated archive: exit 9 and nothing left in the destination', () => {
    const archive = join(store(), `${id}.age`);
    const original = readFileSync(archive);
    const fd = openSync(archive, 'r+');
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, 200_000);
    b[0]! ^= 1;
    writeSync(fd, b, 0, 1, 200_000);
    closeSync(fd);
    const to = join(dir, 'tampered-out');
    const r = bkv(['backup', 'restore', id, '--to', to, '--recovery-code-file', code, '--store', store()]);
    expect(r.code).toBe(9);
    expect(r.stderr).toMatch(/does not authenticate/);
    expect(r.stdout).toBe('');
    expect(readdirSync(to)).toEqual([]);
    expect(bkv(['backup', 'verify', id, '--recovery-code-file', code, '--store', store()]).code).toBe(9);

    writeFileSync(archive, original.subarray(0, original.length - 1000));
    const t = bkv(['backup', 'restore', id, '--to', to, '--recovery-code-file', code, '--store', store()]);
    expect(t.code).toBe(9);
    expect(readdirSync(to)).toEqual([]);
    writeFileSync(archive, original);
  });
});

describe('an interrupted create leaves nothing that list shows', () => {
  const SIZE = 2 * 1024 ** 3;

  /** Starts a create of a 2 GiB sparse file and resolves once the archive is being written. */
  async function startBigCreate(name: string): Promise<{ child: ReturnType<typeof spawn>; store: string; exited: Promise<number | null> }> {
    const src = join(dir, `${name}.bin`);
    const fd = openSync(src, 'w');
    closeSync(fd);
    execFileSync('truncate', ['-s', String(SIZE), src]);
    const code = newCode(`${name}-code.txt`);
    const store = join(dir, `${name}-store`);
    const child = spawn(process.execPath, [BKV, 'backup', 'create', src, '--recovery-code-file', code, '--store', store], { stdio: 'ignore' });
    const exited = new Promise<number | null>((ok) => child.on('exit', (c, sig) => ok(c ?? (sig ? -1 : null))));
    const deadline = Date.now() + 30_000;
    for (;;) {
      const staged = existsSync(store) ? readdirSync(store).filter((n) => n.startsWith('.staging-')) : [];
      if (staged.some((n) => statSync(join(store, n)).size > 4 << 20)) break;
      if (Date.now() > deadline || child.exitCode !== null) throw new Error('the create did not start writing in time');
      await new Promise((r) => setTimeout(r, 20));
    }
    return { child, store, exited };
  }

  it('killed (SIGKILL): only a hidden staging file remains, list is empty', async () => {
    const { child, store, exited } = await startBigCreate('killed');
    child.kill('SIGKILL');
    await exited;
    expect(readdirSync(store).every((n) => n.startsWith('.staging-'))).toBe(true);
    const l = bkv(['backup', 'list', '--store', store, '--json']);
    expect(l.code).toBe(0);
    expect(JSON.parse(l.stdout)).toEqual([]);
  });

  it('Ctrl-C (SIGINT): exit 130 and the staging file is removed too', async () => {
    const { child, store, exited } = await startBigCreate('interrupted');
    child.kill('SIGINT');
    expect(await exited).toBe(130);
    expect(readdirSync(store)).toEqual([]);
    expect(JSON.parse(bkv(['backup', 'list', '--store', store, '--json']).stdout)).toEqual([]);
  });
});
