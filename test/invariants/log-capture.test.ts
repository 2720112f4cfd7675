/**
 * I5 no rollback, no fork, on a single HSM. The HSM advances its position only over an entry with
 * a valid MAC, index = position + 1 and prev = position hash. Everything else is refused with its
 * named outcome and leaves the captured and persisted positions, and the statement, unchanged.
 * Storage served from an old snapshot is refused rather than believed.
 */
import { copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CoreRig, flipBit, pinnedFleetOf, RawClient, type Certificate, type Proposal } from '../helpers/hostile.js';
import { HsmCore } from '../../src/hsm/core.js';
import { softwarePlatform } from '../../src/softhsm/platform.js';
import { startSystem, type InProcessSystem } from '../helpers/system.js';
import { randomBytes } from '../../src/client/webcrypto.js';
import { entryHash, encodeEntry, decodeEntry } from '../../src/protocol/log.js';
import { ProtocolError } from '../../src/protocol/errors.js';
import { VaultError } from '../../src/client/vault.js';

const rigs: CoreRig[] = [];
let sys: InProcessSystem | undefined;
afterEach(async () => {
  await sys?.close();
  sys = undefined;
  for (const r of rigs.splice(0)) await r.close();
});

async function rig(): Promise<CoreRig> {
  const r = await CoreRig.create();
  rigs.push(r);
  return r;
}

/** Applies a Status request and closes a batch: an entry MACed by the fleet, not yet captured. */
async function statusEntry(r: CoreRig): Promise<Proposal> {
  const c = r.client();
  await r.apply((await c.seal({ type: 'Status' as const, userId: 'someone', nonce: randomBytes(16) })).env);
  return r.propose();
}

/**
 * A rig at position 0 (genesis) holding a fork, all MACed by the fleet:
 *   a1 (index 1) <- a2 (index 2), proposed in one leadership, and
 *   b1 (index 1), proposed in the next leadership from the same position.
 */
async function forkedRig(): Promise<{ r: CoreRig; genesis: Uint8Array; a1: Proposal; a2: Proposal; b1: Proposal }> {
  const r = await rig();
  const genesis = (await r.storage.readEntries(0, 1))[0]!.entry;
  const a1 = await statusEntry(r);
  const a2 = await statusEntry(r);
  r.core.stepDown();
  expect(r.core.becomeLeader(r.top).type).toBe('Ok');
  const b1 = await statusEntry(r);
  expect([a1.index, a2.index, b1.index]).toEqual([1, 2, 1]);
  expect(decodeEntry(a2.entry).prev).toEqual(entryHash(a1.entry));
  return { r, genesis, a1, a2, b1 };
}

/** Captured position, persisted position and statement, for "nothing moved" checks. */
function snapshot(r: CoreRig): unknown {
  const s = r.core.status();
  const st = r.core.statement();
  return { captured: s.captured, persisted: s.persisted, halted: s.halted, statement: st.type === 'Ok' ? st.statement : st.type };
}

describe('I5: the HSM captures only the next link of its own chain', () => {
  it('refuses an entry with a bad MAC, whatever field was altered, and stays where it was', async () => {
    const { r, a1 } = await forkedRig();
    const before = snapshot(r);
    const len = a1.entry.length;
    // Layout, from the end: mac 32, leader 16, batch digest 32, root 32, prev 32, index 8, version 2.
    const fields: [string, number][] = [
      ['mac', len - 1],
      ['mac', len - 32],
      ['leader', len - 40],
      ['batch digest', len - 60],
      ['root', len - 100],
      ['prev', len - 140],
      ['index', len - 145],
      ['version', len - 153],
    ];
    for (const [name, at] of fields) {
      expect(r.core.captureNext([flipBit(a1.entry, at)]).type, name).toBe('InvalidMac');
      expect(snapshot(r), name).toEqual(before);
    }
    // The label is not an entry's: refused as malformed.
    expect(r.core.captureNext([flipBit(a1.entry, 3)])).toEqual({ type: 'Malformed' });
    // A precise one: the MAC's last bit.
    expect(r.core.captureNext([flipBit(a1.entry, len - 1)])).toEqual({ type: 'InvalidMac', index: 1 });
    // The entry re-encoded with another index but the same MAC.
    const e = decodeEntry(a1.entry);
    expect(r.core.captureNext([encodeEntry({ ...e, index: 2 })])).toEqual({ type: 'InvalidMac', index: 2 });
    expect(snapshot(r)).toEqual(before);
  });

  it('refuses another fleet\'s entry and bytes that are not an entry', async () => {
    const { r } = await forkedRig();
    const other = await rig();
    const foreign = await statusEntry(other);
    const before = snapshot(r);
    expect(r.core.captureNext([foreign.entry])).toEqual({ type: 'InvalidMac', index: 1 });
    expect(r.core.captureNext([randomBytes(200)])).toEqual({ type: 'Malformed' });
    expect(r.core.captureNext([new Uint8Array(0)])).toEqual({ type: 'Malformed' });
    expect(r.core.captureNext([foreign.entry.subarray(0, foreign.entry.length - 1)])).toEqual({ type: 'Malformed' });
    expect(snapshot(r)).toEqual(before);
  });

  it('refuses a gap, a stale index and a wrong prev, each by name, and stays where it was', async () => {
    const { r, genesis, a1, a2, b1 } = await forkedRig();
    let before = snapshot(r);
    // At position 0: index 2 skips a link.
    expect(r.core.captureNext([a2.entry])).toEqual({ type: 'Gap', expected: 1, got: 2 });
    // Genesis again: stale.
    expect(r.core.captureNext([genesis])).toEqual({ type: 'StaleIndex', index: 0 });
    expect(snapshot(r)).toEqual(before);

    // Take the b-branch.
    expect(r.core.captureNext([b1.entry])).toMatchObject({ type: 'Ok', position: { index: 1, hash: entryHash(b1.entry) } });
    r.mustPersist();
    before = snapshot(r);
    // a2 follows a1, not b1: a fork is refused, however valid its MAC.
    expect(r.core.captureNext([a2.entry])).toEqual({ type: 'WrongPrev', index: 2 });
    // a1 and b1 again: stale.
    expect(r.core.captureNext([a1.entry])).toEqual({ type: 'StaleIndex', index: 1 });
    expect(r.core.captureNext([b1.entry])).toEqual({ type: 'StaleIndex', index: 1 });
    expect(r.core.captureNext([genesis])).toEqual({ type: 'StaleIndex', index: 0 });
    expect(snapshot(r)).toEqual(before);
    expect(r.core.persist().type).toBe('Unchanged');
  });

  it('after a reboot, refuses any first entry but the one its NVRAM names', async () => {
    const { r, genesis, a1, b1 } = await forkedRig();
    expect(r.core.captureNext([b1.entry]).type).toBe('Ok');
    r.mustPersist();
    const core = r.reboot();
    const before = core.status();
    expect(before.awaiting).toEqual({ index: 1, hash: entryHash(b1.entry) });
    expect(core.captureNext([genesis])).toEqual({ type: 'NotMyPosition', index: 0 });
    expect(core.captureNext([a1.entry])).toEqual({ type: 'NotMyPosition', index: 1 });
    expect(core.status()).toEqual(before);
    expect(core.captureNext([b1.entry])).toMatchObject({ type: 'Ok', position: { index: 1 } });
  });
});

describe('I5: a member jumps only with a majority certificate on the chain from its target', () => {
  it('refuses a jump on one member\'s word, on forged statements or on links that do not chain, and takes a proper one', async () => {
    const b = HsmCore.boot(softwarePlatform(mkdtempSync(join(tmpdir(), 'bkv-member-'))));
    const d = HsmCore.boot(softwarePlatform(mkdtempSync(join(tmpdir(), 'bkv-member-'))));
    const r = await CoreRig.create({ extraMembers: [b.memberId, d.memberId] });
    rigs.push(r);
    await r.join(b);
    await r.join(d);
    // An entry at index 1 that the fleet never certified: proposed, then abandoned.
    await r.apply((await r.client().seal({ type: 'Status' as const, userId: 'z', nonce: randomBytes(16) })).env);
    const abandoned = r.propose();
    r.core.stepDown();
    expect(r.core.becomeLeader(r.top).type).toBe('Ok');
    // d falls behind: the leader and b commit two entries without it.
    r.followers = [b];
    const c = r.client();
    await c.status('x');
    await c.status('y');
    const [e1, e2] = (await r.storage.readEntries(1, 2)).map((x) => x.entry);
    const sA = r.ownStatement();
    const sB = b.statement();
    if (sB.type !== 'Ok') throw new Error('statement');
    expect([sA.index, sB.statement.index]).toEqual([2, 2]);
    const before = d.status();
    expect(before.captured?.index).toBe(0);

    const refused: [string, Uint8Array, Certificate, Uint8Array[]][] = [
      ['one member\'s word', e2!, [sB.statement], []],
      ['one member, repeated', e2!, [sB.statement, sB.statement], []],
      ['a forged second statement', e2!, [sB.statement, { ...sA, member: d.memberId }], []],
      ['later statements without the links to them', e1!, [sA, sB.statement], []],
      ['links that do not chain', e1!, [sA, sB.statement], [e1!]],
      ['a certified later entry that does not descend from the target', abandoned.entry, [sA, sB.statement], [e2!]],
    ];
    for (const [name, target, cert, links] of refused) {
      expect(d.captureJump(target, cert, links).type, name).toBe('InvalidCertificate');
      expect(d.status(), name).toEqual(before);
    }
    // A target that is not a fleet entry at all.
    expect(d.captureJump(flipBit(e2!, e2!.length - 1), [sA, sB.statement], []).type).toBe('Malformed');
    expect(d.status()).toEqual(before);

    // A majority on the chain from the target, through its link: accepted (control).
    expect(d.captureJump(e1!, [sA, sB.statement], [e2!])).toMatchObject({ type: 'Ok', position: { index: 1, hash: entryHash(e1!) } });
    expect(d.persist().type).toBe('Persisted');
    expect(d.captureJump(e1!, [sA, sB.statement], [e2!])).toEqual({ type: 'StaleIndex', index: 1 });
    expect(d.captureNext([e2!])).toMatchObject({ type: 'Ok', position: { index: 2 } });
  });
});

describe('I5: old storage does not revive spent guesses', () => {
  it('storage restored from a snapshot taken before guesses were spent is refused: the HSM halts rather than reset the counter', async () => {
    sys = await startSystem();
    const dir = sys.dir;
    const c0 = new RawClient(pinnedFleetOf(sys.agent), (env) => sys!.transport.send(env));
    await c0.register('alice', 'pw', 3);
    await sys.close();
    sys = undefined;

    const files = ['vault.sqlite', 'vault.sqlite-wal', 'vault.sqlite-shm'];
    const snap = mkdtempSync(join(tmpdir(), 'bkv-snap-'));
    for (const f of files) if (existsSync(join(dir, f))) copyFileSync(join(dir, f), join(snap, f));

    sys = await startSystem({ dir });
    const s1 = sys;
    const c1 = new RawClient(pinnedFleetOf(s1.agent), (env) => s1.transport.send(env));
    for (let i = 0; i < 2; i++) expect((await c1.ke1('alice', 'guess')).reply.kind).toBe('response');
    expect(await c1.status('alice')).toMatchObject({ guessesLeft: 1, failuresSinceLastSuccess: 2 });
    await sys.close();
    sys = undefined;

    // The operator puts the old storage back.
    for (const f of files) rmSync(join(dir, f), { force: true });
    for (const f of files) if (existsSync(join(snap, f))) copyFileSync(join(snap, f), join(dir, f));
    const refused = await startSystem({ dir }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ProtocolError);
    expect((refused as ProtocolError).code).toBe('Halted');
    expect(refused).not.toBeInstanceOf(VaultError);
  });
});
