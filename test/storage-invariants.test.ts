/**
 * I1, I3 and I5 against the real SQLite file: a KE1 flood, destruction that leaves nothing
 * useful in storage, and a storage rollback that the HSM refuses.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { copyFileSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { startSystem, type InProcessSystem } from './helpers/system.js';
import { rawCall } from './helpers/raw.js';
import { clientStartLogin, opaqueReady } from '../src/crypto/opaque.js';
import { VaultError } from '../src/client/vault.js';
import { toHex } from '../src/crypto/bytes.js';

let sys: InProcessSystem | undefined;
afterEach(async () => {
  await sys?.close();
  sys = undefined;
});

/** Leaf nodes (sealed record slots) storage holds as live. */
function liveLeaves(path: string): Buffer[] {
  const db = new Database(path, { readonly: true });
  try {
    const rows = db.prepare('SELECT node FROM nodes WHERE obsolete_at IS NULL').all() as { node: Buffer }[];
    return rows.map((r) => r.node).filter((n) => n.subarray(4, 20).toString('latin1') === 'bkv/v1/tree-leaf');
  } finally {
    db.close();
  }
}

function storageBytes(dir: string): Buffer {
  const parts = ['vault.sqlite', 'vault.sqlite-wal'].map((f) => join(dir, f)).filter(existsSync).map((f) => readFileSync(f));
  return Buffer.concat(parts);
}

describe('I1: a KE1 flood without KE3', () => {
  it('gets at most maxGuesses KE2s, then Locked; the right password then fails and the record is gone from storage', async () => {
    await opaqueReady;
    sys = await startSystem();
    const v = sys.vault();
    const { key } = await v.register('dave', 'the right password', { maxGuesses: 4 });
    const [activeLeaf] = liveLeaves(join(sys.dir, 'vault.sqlite'));
    expect(activeLeaf).toBeDefined();
    sys.storage.checkpoint();
    // The search below is meaningful: while the record lives, its sealed leaf is in the file.
    expect(storageBytes(sys.dir).indexOf(activeLeaf!)).toBeGreaterThan(-1);

    let ke2s = 0;
    const outcomes: string[] = [];
    for (let i = 0; i < 10; i++) {
      // The right password's KE1, never followed by KE3: an attacker testing offline would need KE2.
      const r = await rawCall(sys.fleet, sys.transport, { type: 'RecoverStart', userId: 'dave', ke1: clientStartLogin('the right password').ke1 });
      if ('error' in r) throw new Error(r.error);
      if (r.outcome === 'Ok') ke2s++;
      outcomes.push(r.outcome === 'Ok' ? 'KE2' : r.code);
    }
    expect(ke2s).toBe(4);
    expect(outcomes.slice(4)).toEqual(Array(6).fill('Locked'));
    await expect(v.recover('dave', 'the right password')).rejects.toMatchObject({ code: 'Locked' });
    expect((await v.status('dave')).state).toBe('tombstone');

    // I3: after compaction the sealed record is no longer anywhere in the file, and K never was.
    await sys.agent.compactNow(0);
    sys.storage.checkpoint();
    const bytes = storageBytes(sys.dir);
    expect(bytes.indexOf(activeLeaf!)).toBe(-1);
    expect(bytes.indexOf(activeLeaf!.subarray(activeLeaf!.length - 64))).toBe(-1);
    expect(bytes.indexOf(Buffer.from(key))).toBe(-1);
    expect(bytes.indexOf(Buffer.from(toHex(key)))).toBe(-1);
  });
});

describe('I5: storage rolled back to an old copy', () => {
  it('is refused by the HSM instead of granting fresh guesses; the real storage works again', async () => {
    sys = await startSystem();
    const dir = sys.dir;
    await sys.vault().register('erin', 'pw', { maxGuesses: 5 });
    await sys.close();
    const db = join(dir, 'vault.sqlite');
    copyFileSync(db, join(dir, 'old.sqlite'));

    sys = await startSystem({ dir });
    const v = sys.vault();
    for (let i = 0; i < 3; i++) await expect(v.recover('erin', 'wrong')).rejects.toBeInstanceOf(VaultError);
    expect((await v.status('erin')).guessesLeft).toBe(2);
    await sys.close();
    sys = undefined;
    copyFileSync(db, join(dir, 'new.sqlite'));

    // The operator puts the old file back, hoping for 5 fresh guesses.
    copyFileSync(join(dir, 'old.sqlite'), db);
    for (const f of ['vault.sqlite-wal', 'vault.sqlite-shm']) rmSync(join(dir, f), { force: true });
    await expect(startSystem({ dir })).rejects.toMatchObject({ code: 'Halted' });

    // With the real storage back, the counter is where it was.
    copyFileSync(join(dir, 'new.sqlite'), db);
    for (const f of ['vault.sqlite-wal', 'vault.sqlite-shm']) rmSync(join(dir, f), { force: true });
    sys = await startSystem({ dir });
    expect((await sys.vault().status('erin')).guessesLeft).toBe(2);
  });

  it('a restart keeps every registration', async () => {
    sys = await startSystem();
    const dir = sys.dir;
    const a = await sys.vault().register('frank', 'pw-frank');
    const b = await sys.vault().register('gina', 'pw-gina');
    await sys.close();
    sys = await startSystem({ dir });
    expect((await sys.vault().recover('frank', 'pw-frank')).key).toEqual(a.key);
    expect((await sys.vault().recover('gina', 'pw-gina')).key).toEqual(b.key);
  });
});
