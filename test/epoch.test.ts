/**
 * Record epochs (DESIGN section 4, I3): the fleet ratchets the record-epoch key on schedule,
 * re-seals live records, and erases the old key, so a copy of a record taken from storage before
 * the ratchet can no longer be opened by anyone, the HSM included.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { startSystem, type InProcessSystem } from './helpers/system.js';
import { softwarePlatform } from '../src/softhsm/platform.js';
import { decodeHsmSecrets } from '../src/hsm/keys.js';
import { leafEpoch, openSlot } from '../src/hsm/record.js';
import { decodeNode } from '../src/hsm/tree.js';
import { EPOCH_STATE_ID } from '../src/hsm/epoch.js';
import { bytesEqual } from '../src/crypto/bytes.js';

let sys: InProcessSystem | undefined;
afterEach(async () => {
  await sys?.close();
  sys = undefined;
});

function liveLeaves(dbPath: string): { key: Uint8Array; value: Uint8Array }[] {
  const db = new Database(dbPath, { readonly: true });
  try {
    const rows = db.prepare('SELECT node FROM nodes WHERE obsolete_at IS NULL').all() as { node: Buffer }[];
    const out: { key: Uint8Array; value: Uint8Array }[] = [];
    for (const r of rows) {
      const n = decodeNode(new Uint8Array(r.node));
      if (n?.kind === 'Leaf' && !bytesEqual(n.key, EPOCH_STATE_ID)) out.push({ key: n.key, value: n.value });
    }
    return out;
  } finally {
    db.close();
  }
}

const until = async (what: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> => {
  const end = Date.now() + ms;
  while (!(await what())) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
};

describe('record epochs', () => {
  it('ratchet, re-seal every live record and tombstone, erase the old key; records still recover', async () => {
    // The HSM's clock, moved by hand: the schedule is a day; nothing ratchets until we say so.
    let skew = 0;
    sys = await startSystem({ policy: { epochIntervalMs: 86_400_000 }, leaseMs: 300, now: () => Date.now() + skew });
    const v = sys.vault();
    const keys = new Map<string, Uint8Array>();
    for (const u of ['ann', 'ben', 'cat', 'dan']) keys.set(u, (await v.register(u, `pw-${u}`)).key);
    await v.delete('dan', 'pw-dan'); // a tombstone is re-sealed too: it keeps the generation
    const dbPath = join(sys.dir, 'vault.sqlite');
    const before = liveLeaves(dbPath);
    expect(before.length).toBe(4);
    expect(before.every((l) => leafEpoch(l.value) === 0)).toBe(true);
    const platform = softwarePlatform(join(sys.dir, 'hsm-0'));
    const epoch0Key = decodeHsmSecrets(platform.secrets.read()!).fleet!.epochKey;
    const fleetId = sys.fleet.fleetId;
    expect(before.every((l) => openSlot(epoch0Key, fleetId, l.key, l.value) !== null)).toBe(true);

    // After the interval, the next batch that writes starts epoch 1; the leader then sweeps.
    skew += 86_400_000;
    await v.status('ann');
    await v.recover('ann', 'pw-ann');
    await until(() => sys!.agent.hsm.epochInfo()?.epoch === 1 && sys!.agent.hsm.epochInfo()?.holdsPrevious === false);

    const after = liveLeaves(dbPath);
    expect(after.length).toBe(4);
    expect(after.every((l) => leafEpoch(l.value) === 1)).toBe(true);
    // The HSM's secret store holds epoch 1's key only; epoch 0's cannot be rebuilt from it.
    const stored = decodeHsmSecrets(platform.secrets.read()!).fleet!;
    expect(stored.epoch).toBe(1);
    expect(stored.previousEpochKey).toBeUndefined();
    expect(bytesEqual(stored.epochKey, epoch0Key)).toBe(false);
    expect(stored.secrets.record.every((b) => b === 0)).toBe(true);
    // Old copies (a storage backup from before) no longer open under any key the HSM holds.
    expect(before.every((l) => openSlot(stored.epochKey, fleetId, l.key, l.value) === null)).toBe(true);

    for (const u of ['ann', 'ben', 'cat']) expect((await v.recover(u, `pw-${u}`)).key).toEqual(keys.get(u));
    expect((await v.status('dan')).state).toBe('tombstone');
    await expect(v.register('dan', 'again')).resolves.toBeDefined();
  });
});
