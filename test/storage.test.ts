/** One storage suite, run on every engine: SQLite (a file) and PostgreSQL (a real server). */
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { SqliteStorage } from '../src/storage/sqlite.js';
import { PostgresStorage } from '../src/storage/postgres.js';
import type { Storage } from '../src/storage/types.js';
import { Agent } from '../src/agent/agent.js';
import { softwarePlatform } from '../src/softhsm/platform.js';
import { Vault } from '../src/client/vault.js';
import { makeTrustFile, parseTrustFile } from '../src/protocol/fleet.js';
import { freshPgUrl, pgAvailable } from './helpers/pg.js';
import { encodeEntry, entryHash } from '../src/protocol/log.js';

const b = (...v: number[]): Uint8Array => Uint8Array.from(v);
const h = (n: number): Uint8Array => new Uint8Array(32).fill(n);

/** A chain of well-formed entries (storage checks links, not MACs): chain[i] links to chain[i - 1]. */
function chain(n: number, fork = 0): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const prev = i === 0 ? h(0) : entryHash(out[i - 1]!);
    out.push(encodeEntry({ version: 1, index: i, prev, root: h(fork), batchDigest: h(i), leader: new Uint8Array(16), mac: new Uint8Array(32) }));
  }
  return out;
}

const engines: [string, () => Promise<Storage>][] = [['sqlite', async () => new SqliteStorage(join(mkdtempSync(join(tmpdir(), 'bkv-st-')), 's.sqlite'))]];
if (pgAvailable()) engines.push(['postgres', async () => PostgresStorage.connect(await freshPgUrl())]);

describe.each(engines)('storage engine: %s', (_name, open) => {
  let s: Storage | undefined;
  afterEach(async () => {
    await s?.close();
    s = undefined;
  });

  it('appends entries only at a free index that extends the tail, with their nodes, in one transaction', async () => {
    s = await open();
    const c = chain(3);
    const other = chain(3, 7);
    expect(await s.latestEntry()).toBeUndefined();
    expect(await s.appendEntry({ index: 0, entry: c[0]!, top: null }, [], [])).toEqual({ type: 'Appended' });
    // An entry that skips an index, or does not link to the stored tail, would wedge the log.
    expect(await s.appendEntry({ index: 2, entry: c[2]!, top: null }, [], [])).toEqual({ type: 'NotLinked' });
    expect(await s.appendEntry({ index: 1, entry: other[1]!, top: null }, [], [])).toEqual({ type: 'NotLinked' });
    expect(await s.appendEntry({ index: 1, entry: c[1]!, top: h(9) }, [{ hash: h(1), node: b(7, 7) }], [])).toEqual({ type: 'Appended' });
    // A second writer at the same index loses, and its nodes are not written.
    expect(await s.appendEntry({ index: 1, entry: c[1]!, top: h(8) }, [{ hash: h(2), node: b(8) }], [])).toEqual({ type: 'IndexTaken' });
    expect(await s.getNode(h(2))).toBeUndefined();
    expect(await s.getNode(h(1))).toEqual(b(7, 7));
    expect((await s.readEntries(0, 10)).map((e) => e.index)).toEqual([0, 1]);
    expect(await s.latestEntry()).toEqual({ index: 1, entry: c[1]!, top: h(9) });
    expect((await s.readEntries(1, 1)).length).toBe(1);
    expect(await s.readEntries(5, 10)).toEqual([]);
  });

  it('stores certificates and compacts superseded nodes and old entries', async () => {
    s = await open();
    const c = chain(3);
    await s.appendEntry({ index: 0, entry: c[0]!, top: null }, [{ hash: h(1), node: b(1) }], []);
    await s.appendEntry({ index: 1, entry: c[1]!, top: h(2) }, [{ hash: h(2), node: b(2) }], [h(1)]);
    await s.appendEntry({ index: 2, entry: c[2]!, top: h(3) }, [{ hash: h(3), node: b(3) }], [h(2)]);
    await s.putCertificate({ index: 2, hash: h(5), statements: [b(1, 2), b(3)] });
    expect(await s.latestCertificate()).toEqual({ index: 2, hash: h(5), statements: [b(1, 2), b(3)] });
    // Compact below index 1: the node superseded at 1 goes, the one superseded at 2 stays.
    expect(await s.compact(1)).toEqual({ nodes: 1, entries: 1 });
    expect(await s.getNode(h(1))).toBeUndefined();
    expect(await s.getNode(h(2))).toEqual(b(2));
    expect(await s.getNode(h(3))).toEqual(b(3));
    expect((await s.readEntries(0, 10)).map((e) => e.index)).toEqual([1, 2]);
  });

  it('a node written again after being superseded is live again', async () => {
    s = await open();
    const c = chain(3);
    await s.appendEntry({ index: 0, entry: c[0]!, top: null }, [{ hash: h(1), node: b(1) }], []);
    await s.appendEntry({ index: 1, entry: c[1]!, top: null }, [], [h(1)]);
    await s.appendEntry({ index: 2, entry: c[2]!, top: null }, [{ hash: h(1), node: b(1) }], []);
    await s.compact(5);
    expect(await s.getNode(h(1))).toEqual(b(1));
  });

  it('the leader lease goes to one holder at a time, is renewed by it, and can be given up', async () => {
    s = await open();
    expect((await s.acquireLease('a', 1000, 10_000)).holder).toBe('a');
    expect((await s.acquireLease('b', 1000, 10_500)).holder).toBe('a');
    expect(await s.acquireLease('a', 1000, 10_900)).toEqual({ holder: 'a', expiresAt: 11_900 });
    expect((await s.acquireLease('b', 1000, 12_000)).holder).toBe('b');
    await s.releaseLease('a'); // not the holder: nothing happens
    expect((await s.acquireLease('a', 1000, 12_100)).holder).toBe('b');
    await s.releaseLease('b');
    expect((await s.acquireLease('a', 1000, 12_200)).holder).toBe('a');
  });

  it('runs the vault: register and recover through an agent on this engine', async () => {
    s = await open();
    const agent = await Agent.start({ platform: softwarePlatform(mkdtempSync(join(tmpdir(), 'bkv-hsm-'))), storage: s, log: pino({ level: 'silent' }), createFleet: {} });
    try {
      const fleet = parseTrustFile(makeTrustFile(agent.publicKeys(), agent.fleetConfig().routes));
      const v = new Vault({ fleet, transport: { send: (env) => agent.submit(env) }, keyStretching: 'insecure-fast-for-tests-only' });
      const { key } = await v.register('pat', 'pw');
      expect((await v.recover('pat', 'pw')).key).toEqual(key);
      await expect(v.recover('pat', 'nope')).rejects.toMatchObject({ code: 'WrongPassword' });
      expect((await v.status('pat')).guessesLeft).toBe(9);
    } finally {
      await agent.close();
    }
  });
});
