/** Shared test helpers: temporary directories, external tools (age CLI, GNU tar), streams. */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export async function tempDir(prefix = 'bkv-backup-test-'): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

function hasTool(cmd: string, args: string[]): boolean {
  try {
    execFileSync(cmd, args, { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * Debian's `age` CLI. CI installs it; elsewhere its tests are skipped unless
 * BKV_REQUIRE_AGE_CLI=1, which turns a missing CLI into a failure.
 */
export const hasAgeCli = hasTool('age', ['--version']) || process.env.BKV_REQUIRE_AGE_CLI === '1';
export const hasGnuTar = hasTool('tar', ['--version']);

/** Runs a command with `input` on stdin; resolves with stdout, rejects with stderr on failure. */
export function run(cmd: string, args: string[], input?: Uint8Array, cwd?: string): Promise<Buffer> {
  return new Promise((resolveP, reject) => {
    const p = spawn(cmd, args, { cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    p.stdout.on('data', (d: Buffer) => out.push(d));
    p.stderr.on('data', (d: Buffer) => err.push(d));
    p.on('error', reject);
    p.on('close', (code) => {
      if (code === 0) resolveP(Buffer.concat(out));
      else reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${Buffer.concat(err).toString()}`));
    });
    p.stdin.on('error', () => undefined); // the tool may exit before reading everything
    p.stdin.end(input ?? new Uint8Array(0));
  });
}

export async function* chunks(b: Uint8Array, size = 1000): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < b.length; i += size) yield b.subarray(i, i + size);
  if (b.length === 0) return;
}

/** Deterministic pseudo-random bytes (not secret: test data only). */
export function pattern(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 255;
  }
  return out;
}

/** A deterministic RandomSource for reproducible age files. */
export function seededRandom(seed: number): (n: number) => Uint8Array {
  let s = seed;
  return (n) => pattern(n, ++s * 2654435761);
}
