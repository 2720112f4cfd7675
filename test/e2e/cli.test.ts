/** The README's promises, through real processes and sockets: `bkv dev` and the client commands. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bkv, startDev, type DevSystem } from '../helpers/dev.js';

let dev: DevSystem;
const dir = mkdtempSync(join(tmpdir(), 'bkv-e2e-'));

beforeAll(async () => {
  dev = await startDev(dir);
});
afterAll(async () => {
  await dev?.stop();
});

const conn = (user: string): string[] => ['--server', dev.url, '--trust', dev.trust, '--user', user];

describe('bkv dev and the client commands', () => {
  it('writes the trust file and the process list', () => {
    expect(dev.processes.map((p) => p.role).sort()).toEqual(['frontend', 'hsm']);
    for (const p of dev.processes) expect(p.pid).toBeGreaterThan(0);
  });

  it('registers, recovers (K in hex and nothing else on stdout) and reports status', () => {
    const reg = bkv(['register', ...conn('alice'), '--password-stdin', '--print-key'], 'alice pw\n');
    expect(reg.code).toBe(0);
    const key = reg.stdout.trim();
    expect(key).toMatch(/^[0-9a-f]{64}$/);
    const rec = bkv(['recover', ...conn('alice'), '--password-stdin'], 'alice pw\n');
    expect(rec.code).toBe(0);
    expect(rec.stdout).toBe(`${key}\n`);
    const st = bkv(['status', ...conn('alice'), '--json']);
    expect(st.code).toBe(0);
    expect(JSON.parse(st.stdout)).toMatchObject({ state: 'active', guessesLeft: 10, maxGuesses: 10 });
  });

  it('register without --print-key prints nothing on stdout', () => {
    const reg = bkv(['register', ...conn('quiet'), '--password-stdin'], 'pw\n');
    expect(reg.code).toBe(0);
    expect(reg.stdout).toBe('');
  });

  it('I1 through the CLI: exit 3 with the count going down, then exit 4, and the right password fails too', () => {
    expect(bkv(['register', ...conn('bob'), '--password-stdin', '--max-guesses', '3'], 'right\n').code).toBe(0);
    const left: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = bkv(['recover', ...conn('bob'), '--password-stdin'], 'wrong\n');
      expect(r.code).toBe(3);
      expect(r.stdout).toBe('');
      left.push(/(\d+) guess/.exec(r.stderr)![1]!);
    }
    expect(left).toEqual(['2', '1', '0']);
    const locked = bkv(['recover', ...conn('bob'), '--password-stdin'], 'right\n');
    expect(locked.code).toBe(4);
    expect(locked.stderr).toMatch(/locked/);
  });

  it('change-password and delete', () => {
    expect(bkv(['register', ...conn('carol'), '--password-stdin'], 'old\n').code).toBe(0);
    expect(bkv(['change-password', ...conn('carol'), '--password-stdin'], 'old\nnew\n').code).toBe(0);
    expect(bkv(['recover', ...conn('carol'), '--password-stdin'], 'old\n').code).toBe(3);
    expect(bkv(['recover', ...conn('carol'), '--password-stdin'], 'new\n').code).toBe(0);
    expect(bkv(['delete', ...conn('carol'), '--password-stdin'], 'new\n').code).toBe(0);
    expect(bkv(['recover', ...conn('carol'), '--password-stdin'], 'new\n').code).toBe(4);
  });

  it('exit codes: 5 not registered, 2 usage, 7 keys that fail verification, 6 unavailable', () => {
    expect(bkv(['recover', ...conn('nobody'), '--password-stdin'], 'x\n').code).toBe(5);
    expect(bkv(['recover', '--server', dev.url]).code).toBe(2);
    expect(bkv(['register', ...conn('x'), '--password-stdin', '--max-guesses', '0'], 'pw\n').code).toBe(2);
    const badTrust = join(dir, 'bad-trust.json');
    writeSwappedTrust(badTrust, dev.trust);
    expect(bkv(['status', '--server', dev.url, '--trust', badTrust, '--user', 'alice']).code).toBe(7);
    expect(bkv(['status', '--server', 'http://127.0.0.1:9', '--trust', dev.trust, '--user', 'alice']).code).toBe(6);
  });

  it('survives a restart with every registration intact', async () => {
    const before = bkv(['recover', ...conn('alice'), '--password-stdin'], 'alice pw\n').stdout;
    await dev.stop();
    dev = await startDev(dir);
    const after = bkv(['recover', ...conn('alice'), '--password-stdin'], 'alice pw\n');
    expect(after.code).toBe(0);
    expect(after.stdout).toBe(before);
  });
});

/** Writes a copy of a trust file whose keys are swapped: its fleet id no longer matches. */
function writeSwappedTrust(to: string, from: string): void {
  const t = JSON.parse(readFileSync(from, 'utf8')) as { keys: { hpke: string; sign: string } };
  [t.keys.hpke, t.keys.sign] = [t.keys.sign, t.keys.hpke];
  writeFileSync(to, JSON.stringify(t));
}
