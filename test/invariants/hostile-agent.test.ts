/**
 * I1 guess limit against a hostile agent. The agent drives the HSM core and may call it in any
 * order with any arguments, skip steps, forge certificates, crash at any point and replay what it
 * saw. Whatever it does, a KE2 (or any response) leaves the HSM only once the entry that counts
 * its guess is certified by a majority of the fleet, and a lost batch never yields its KE2.
 *
 * These tests drive a core directly (test/helpers/hostile.ts, CoreRig): a software HSM platform in
 * a temporary directory, a real SQLite storage file, and no agent but the test.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { CoreRig, RawClient, answersTo, expectOk, outcomeOf, pinnedFleetOf, type Certificate, type SealedCall } from '../helpers/hostile.js';
import { startSystem, type InProcessSystem } from '../helpers/system.js';
import { clientStartLogin, clientStartRegistration } from '../../src/crypto/opaque.js';
import { collectPath } from '../../src/agent/proof.js';
import { randomBytes } from '../../src/client/webcrypto.js';
import { entryHash } from '../../src/protocol/log.js';
import { ProtocolError } from '../../src/protocol/errors.js';
import { VaultError } from '../../src/client/vault.js';
import { SqliteStorage } from '../../src/storage/sqlite.js';
import { cpSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HsmCore } from '../../src/hsm/core.js';
import { softwarePlatform } from '../../src/softhsm/platform.js';

const rigs: CoreRig[] = [];
let sys: InProcessSystem | undefined;
afterEach(async () => {
  await sys?.close();
  sys = undefined;
  for (const r of rigs.splice(0)) await r.close();
});

async function rig(opts: Parameters<typeof CoreRig.create>[0] = {}): Promise<CoreRig> {
  const r = await CoreRig.create(opts);
  rigs.push(r);
  return r;
}

/** A rig with 'alice' registered (password 'pw', maxGuesses 5) through the honest path. */
async function rigWithAlice(): Promise<{ r: CoreRig; c: RawClient }> {
  const r = await rig();
  const c = r.client();
  await c.register('alice', 'pw', 5);
  return { r, c };
}

function ke1For(c: RawClient, userId: string, password: string) {
  return c.seal({ type: 'RecoverStart' as const, userId, ke1: clientStartLogin(password).ke1 });
}

describe('I1: no response leaves the HSM before its entry is certified', () => {
  it('a batched KE2 is never released by an empty, forged, foreign or mixed certificate', async () => {
    const { r } = await rigWithAlice();
    const c = r.client();
    const persisted = r.core.status().persisted!;
    const call = await ke1For(c, 'alice', 'pw');
    await r.apply(call.env);
    const p = r.propose();
    expect(p.index).toBe(persisted.index + 1);
    const hash = entryHash(p.entry);
    const me = r.core.memberId;

    // Another fleet's HSM, with a genuine statement of its own.
    const other = await rig();
    const otherStatement = other.ownStatement();

    const forged: [string, Certificate][] = [
      ['empty', []],
      ['own member id, made-up MAC', [{ member: me, index: p.index, hash, mac: randomBytes(32) }]],
      ['own member id, MAC of the persisted position moved to the new entry', [{ ...r.ownStatement(), index: p.index, hash }]],
      ['non-member', [{ member: randomBytes(16), index: p.index, hash, mac: randomBytes(32) }]],
      ['another fleet\'s genuine statement', [otherStatement]],
      ['another fleet\'s statement relabelled', [{ ...otherStatement, index: p.index, hash }]],
    ];
    for (const [name, cert] of forged) {
      const res = r.core.commit(cert);
      expect(res.type, name).toBe('InvalidCertificate');
      expect('released' in res, name).toBe(false);
    }
    // A forged statement for the new entry next to a genuine one for the persisted position: the
    // forgery is ignored, and the genuine statement releases nothing newer than its own entry.
    expect(r.core.commit([r.ownStatement(), { member: me, index: p.index, hash, mac: randomBytes(32) }])).toEqual({ type: 'Committed', index: persisted.index, released: [] });
    expect(r.core.commit([{ member: me, index: p.index, hash, mac: randomBytes(32) }, r.ownStatement()])).toEqual({ type: 'Committed', index: persisted.index, released: [] });

    // A genuine certificate for the older, persisted position releases nothing newer.
    const old = r.core.commit([r.ownStatement()]);
    expect(old).toEqual({ type: 'Committed', index: persisted.index, released: [] });

    // The HSM only ever states its persisted position.
    expect(r.ownStatement().index).toBe(persisted.index);
    expect(r.core.status().persisted).toEqual(persisted);

    // Giving up on the batch yields "outcome unknown", never the sealed KE2.
    const dropped = r.core.stepDown();
    expect(dropped.length).toBe(1);
    expect(dropped.every((d) => d.response.type === 'OutcomeUnknown')).toBe(true);
    expect(await answersTo(call, dropped)).toEqual([]);

    // The entry was never written: no guess was counted and none was handed out.
    expect(r.core.becomeLeader(r.top).type).toBe('Ok');
    expect(await r.client().status('alice')).toMatchObject({ guessesLeft: 5, failuresSinceLastSuccess: 0 });
  });

  it('a statement exists only for the persisted position, and only a certificate for the KE2\'s entry releases it', async () => {
    const { r } = await rigWithAlice();
    const c = r.client();
    const call = await ke1For(c, 'alice', 'pw');
    const handle = await r.apply(call.env);
    const p = r.propose();
    const before = r.ownStatement();
    expect(before.index).toBe(p.index - 1);

    // Written and captured, but not yet in NVRAM: still no statement for it, nothing released.
    await r.write(p);
    await r.captureFromStorage(p.index);
    expect(r.core.status().captured!.index).toBe(p.index);
    const notYet = r.ownStatement();
    expect(notYet.index).toBe(p.index - 1);
    expect(r.core.commit([notYet])).toEqual({ type: 'Committed', index: p.index - 1, released: [] });

    // Persisted: the statement names the entry, and its certificate releases the KE2 (control).
    r.mustPersist();
    const st = r.ownStatement();
    expect(st.index).toBe(p.index);
    const done = r.core.commit([st]);
    expect(done.type).toBe('Committed');
    if (done.type !== 'Committed') return;
    expect(done.released.map((x) => x.handle)).toEqual([handle]);
    const [res] = await answersTo(call, done.released);
    expect(res).toMatchObject({ type: 'RecoverStart', outcome: 'Ok', guessesLeft: 4 });
  });

  it('a certificate for an earlier entry releases that entry\'s responses and none of a later one', async () => {
    const { r } = await rigWithAlice();
    const c = r.client();
    const first = await c.seal({ type: 'Status' as const, userId: 'alice', nonce: randomBytes(16) });
    const second = await ke1For(c, 'alice', 'pw');
    const h1 = await r.apply(first.env);
    const p1 = r.propose();
    const h2 = await r.apply(second.env);
    const p2 = r.propose();
    expect(p2.index).toBe(p1.index + 1);
    await r.write(p1);
    await r.captureFromStorage(p1.index);
    r.mustPersist();
    const c1 = r.core.commit([r.ownStatement()]);
    expect(c1.type === 'Committed' && c1.released.map((x) => x.handle)).toEqual([h1]);
    expect(await answersTo(second, c1.type === 'Committed' ? c1.released : [])).toEqual([]);
    // The KE2 comes only with its own entry.
    await r.write(p2);
    await r.captureFromStorage(p2.index);
    r.mustPersist();
    const c2 = r.core.commit([r.ownStatement()]);
    expect(c2.type === 'Committed' && c2.released.map((x) => x.handle)).toEqual([h2]);
  });

  it('a genuine certificate for a later entry on another branch releases nothing of this leader\'s', async () => {
    const { r } = await rigWithAlice();
    const c = r.client();
    const persisted = r.core.status().persisted!;
    // A copy of this HSM's private directory stands for the rest of a fleet that follows another
    // branch: its statements carry this fleet's capture MAC and a member id the fleet lists.
    const cloneDir = mkdtempSync(join(tmpdir(), 'bkv-clone-'));
    cpSync(join(r.dir, 'hsm-0'), cloneDir, { recursive: true });
    const clone = HsmCore.boot(softwarePlatform(cloneDir));
    const rows = await r.storage.readEntries(persisted.index, 1);
    expect(clone.captureNext(rows.map((x) => x.entry)).type).toBe('Ok');
    expect(clone.persist().type).toBe('Unchanged');
    expect(clone.becomeLeader(r.top).type).toBe('Ok');

    // This leader: a KE1 for alice at the next index, pending.
    const call = await ke1For(c, 'alice', 'pw');
    await r.apply(call.env);
    const mine = r.propose();

    // The other branch: two entries without alice's guess, captured and persisted there.
    const other: Uint8Array[] = [];
    for (let i = 0; i < 2; i++) {
      const o = clone.openRequest((await c.seal({ type: 'Status' as const, userId: 'bob', nonce: randomBytes(16) })).env);
      if (o.type !== 'Opened') throw new Error('open');
      expect(clone.applyRequest(o.handle, await collectPath(r.storage, r.top, o.recordId)).type).toBe('Applied');
      const p = clone.closeBatch();
      if (p.type !== 'Proposed') throw new Error('close');
      other.push(p.entry);
    }
    const statements = other.map((e) => {
      expect(clone.captureNext([e]).type).toBe('Ok');
      expect(clone.persist().type).toBe('Persisted');
      const st = clone.statement();
      if (st.type !== 'Ok') throw new Error('statement');
      return st.statement;
    });
    expect(statements.map((x) => x.index)).toEqual([mine.index, mine.index + 1]);
    expect(statements[0]!.member).toEqual(r.core.memberId);

    // A valid certificate, for an index beyond this leader's entry, on a chain that lacks it.
    const res = r.core.commit([statements[1]!]);
    expect(res.type).not.toBe('InvalidCertificate');
    const released = 'released' in res ? res.released : [];
    expect(released.filter((x) => x.response.type === 'Sealed')).toEqual([]);
    expect(await answersTo(call, released)).toEqual([]);

    // A valid certificate for another entry at the very index of the KE2's entry: the leader
    // has lost that index; it steps down and answers "outcome unknown", never the KE2.
    const lost = r.core.commit([statements[0]!]);
    expect(lost.type).toBe('SteppedDown');
    const answered = 'released' in lost ? lost.released : [];
    expect(answered.map((x) => x.response.type)).toEqual(['OutcomeUnknown']);
    expect(r.core.isLeader()).toBe(false);
  });

  it('in a three-member fleet, one member\'s statements, however repeated, release nothing', async () => {
    const r = await rig({ extraMembers: [randomBytes(16), randomBytes(16)] });
    const c = r.client();
    const call = await c.seal({ type: 'RegisterStart' as const, userId: 'zoe', registrationRequest: randomBytes(32) });
    await r.apply(call.env);
    const p = r.propose();
    await r.write(p);
    await r.captureFromStorage(p.index);
    r.mustPersist();
    const own = r.ownStatement();
    expect(own.index).toBe(p.index);
    const peer = r.core.fleetConfig()!.members[1]!;
    for (const cert of [[own], [own, own, own], [own, { ...own, member: peer, mac: randomBytes(32) }], [own, { ...own, member: peer }]]) {
      expect(r.core.commit(cert).type).toBe('InvalidCertificate');
    }
    const dropped = r.core.stepDown();
    expect(dropped.map((d) => d.response.type)).toEqual(['OutcomeUnknown']);
  });

  it('in a fleet of three, a KE2 is released only once two members have persisted its entry on the leader\'s chain', async () => {
    const b = HsmCore.boot(softwarePlatform(mkdtempSync(join(tmpdir(), 'bkv-member-'))));
    const d = HsmCore.boot(softwarePlatform(mkdtempSync(join(tmpdir(), 'bkv-member-'))));
    const r = await rig({ extraMembers: [b.memberId, d.memberId] });
    await r.join(b);
    await r.join(d);
    const c = r.client();
    await c.register('alice', 'pw', 5);
    const k = r.core.status().persisted!.index;

    const call = await ke1For(c, 'alice', 'pw');
    const handle = await r.apply(call.env);
    const p = r.propose();
    await r.write(p);
    await r.captureFromStorage(p.index);
    r.mustPersist();
    const sA = r.ownStatement();
    await r.catchUpFollower(b);
    const sB = b.statement();
    if (sB.type !== 'Ok') throw new Error('statement');
    const sD = d.statement(); // d has not seen the entry: its statement names index k
    if (sD.type !== 'Ok') throw new Error('statement');
    expect([sA.index, sB.statement.index, sD.statement.index]).toEqual([p.index, p.index, k]);

    const noRelease: [string, Certificate][] = [
      ['the leader alone', [sA]],
      ['the leader, repeated', [sA, sA, sA]],
      ['one follower alone', [sB.statement]],
      ['the leader and a forged follower', [sA, { ...sD.statement, index: p.index, hash: sA.hash }]],
      ['the leader\'s statement relabelled as a follower\'s', [sA, { ...sA, member: d.memberId }]],
    ];
    for (const [name, cert] of noRelease) {
      const res = r.core.commit(cert);
      expect(res.type, name).toBe('InvalidCertificate');
    }
    // A majority, but one of them only at the older position: that position is all it commits.
    expect(r.core.commit([sB.statement, sD.statement])).toEqual({ type: 'Committed', index: k, released: [] });
    expect(r.core.commit([sA, sD.statement])).toEqual({ type: 'Committed', index: k, released: [] });
    // Two members at the new entry: released (control).
    const done = r.core.commit([sA, sB.statement]);
    expect(done.type === 'Committed' && done.released.map((x) => x.handle)).toEqual([handle]);
    expect(await answersTo(call, done.type === 'Committed' ? done.released : [])).toMatchObject([{ type: 'RecoverStart', outcome: 'Ok', guessesLeft: 4 }]);
  });

  it('when another entry is captured at the index of a pending KE2, the KE2 is answered "outcome unknown", never released', async () => {
    const { r } = await rigWithAlice();
    const c = r.client();
    // First leadership: an entry at the next index holding only a Status.
    await r.apply((await c.seal({ type: 'Status' as const, userId: 'alice', nonce: randomBytes(16) })).env);
    const fork = r.propose();
    // The agent makes the HSM lead again from the same position and sends a KE1.
    r.core.stepDown();
    expect(r.core.becomeLeader(r.top).type).toBe('Ok');
    const call = await ke1For(c, 'alice', 'pw');
    await r.apply(call.env);
    const p = r.propose();
    expect(p.index).toBe(fork.index);
    // It writes the other entry in its place.
    await r.write(fork);
    const cap = r.core.captureNext([fork.entry]);
    expect(cap.type).toBe('Ok');
    if (cap.type !== 'Ok') return;
    expect(cap.steppedDown?.map((d) => d.response.type)).toEqual(['OutcomeUnknown']);
    r.mustPersist();
    const done = r.core.commit([r.ownStatement()]);
    expect(done).toEqual({ type: 'Committed', index: fork.index, released: [] });
    // The KE1 was not counted, and not answered.
    expect(r.core.becomeLeader(r.top).type).toBe('Ok');
    expect(await r.client().status('alice')).toMatchObject({ guessesLeft: 5, failuresSinceLastSuccess: 0 });
  });

  it('when the conflicting entry arrives in a capture that is then refused, the pending KE2 is still answered "outcome unknown"', async () => {
    const { r } = await rigWithAlice();
    const c = r.client();
    await r.apply((await c.seal({ type: 'Status' as const, userId: 'alice', nonce: randomBytes(16) })).env);
    const fork = r.propose();
    r.core.stepDown();
    expect(r.core.becomeLeader(r.top).type).toBe('Ok');
    const call = await ke1For(c, 'alice', 'pw');
    const handle = await r.apply(call.env);
    expect(r.propose().index).toBe(fork.index);
    // The other entry at the KE2's index, followed by bytes that are not an entry.
    const cap = r.core.captureNext([fork.entry, randomBytes(100)]);
    expect(cap.type).toBe('Malformed');
    // The leader lost its index, so it no longer leads ...
    expect(r.core.isLeader()).toBe(false);
    // ... and the KE1's caller must still get "outcome unknown" (DESIGN section 5), from this
    // capture's answer or from stepDown: it must not be left without an answer.
    const answered = [...('steppedDown' in cap && Array.isArray(cap.steppedDown) ? cap.steppedDown : []), ...r.core.stepDown()];
    expect(answered).toEqual([{ handle, response: { type: 'OutcomeUnknown' } }]);
  });
});

describe('I1, I2: a hostile agent cannot make a record look absent or apply a request twice', () => {
  it('a withheld, foreign or stale tree path for a registered user is refused as StaleProof, never treated as "not registered"', async () => {
    const { r, c } = await rigWithAlice();
    const topBeforeBob = r.top;
    await c.register('bob', 'pw-b', 5);
    const bobOpen = r.core.openRequest((await c.seal({ type: 'Status' as const, userId: 'bob', nonce: randomBytes(16) })).env);
    if (bobOpen.type !== 'Opened') throw new Error('open');
    const bobPath = await collectPath(r.storage, r.top, bobOpen.recordId);
    // Lead afresh, so the HSM's overlay holds no node it could use instead of the shipped ones.
    r.core.stepDown();
    expect(r.core.becomeLeader(r.top).type).toBe('Ok');
    const applied: SealedCall[] = [];
    for (const kind of ['RegisterStart', 'RecoverStart'] as const) {
      const call: SealedCall = kind === 'RegisterStart'
        ? await c.seal({ type: 'RegisterStart' as const, userId: 'alice', registrationRequest: clientStartRegistration('guess').request })
        : await ke1For(c, 'alice', 'guess');
      const o = r.core.openRequest(call.env);
      if (o.type !== 'Opened') throw new Error('open');
      const alicePathThen = await collectPath(r.storage, topBeforeBob, o.recordId);
      const alicePath = await collectPath(r.storage, r.top, o.recordId);
      const bad: [string, Uint8Array[]][] = [
        ['no nodes', []],
        ['the top node only', alicePath.slice(0, 1)],
        ['bob\'s path', bobPath],
        ['alice\'s path under an older root', alicePathThen],
        ['alice\'s path without its leaf', alicePath.slice(0, -1)],
      ];
      for (const [name, nodes] of bad) {
        expect(r.core.applyRequest(o.handle, nodes), `${kind}: ${name}`).toEqual({ type: 'StaleProof', recordId: o.recordId });
      }
      // With her real path the request is applied as what it is (control), exactly once.
      expect(r.core.applyRequest(o.handle, alicePath)).toEqual({ type: 'Applied' });
      expect(r.core.applyRequest(o.handle, alicePath)).toEqual({ type: 'UnknownHandle' });
      applied.push(call);
    }
    const p = r.propose();
    await r.write(p);
    await r.captureFromStorage(p.index);
    r.mustPersist();
    const done = r.core.commit([r.ownStatement()]);
    expect(done.type).toBe('Committed');
    const released = done.type === 'Committed' ? done.released : [];
    expect(released.length).toBe(2);
    expect(await answersTo(applied[0]!, released)).toMatchObject([{ type: 'RegisterStart', outcome: 'Error', code: 'AlreadyRegistered' }]);
    expect(await answersTo(applied[1]!, released)).toMatchObject([{ type: 'RecoverStart', outcome: 'Ok', guessesLeft: 4 }]);
    expect(await r.client().status('alice')).toMatchObject({ state: 'active', guessesLeft: 4, failuresSinceLastSuccess: 1 });
  });
});

describe('I1: a crash never hands out the KE2 of a lost batch', () => {
  it('entry written but not persisted, then a crash: the rebooted HSM re-captures it, releases nothing, and the guess stays counted', async () => {
    const { r } = await rigWithAlice();
    const c = r.client();
    const persisted = r.core.status().persisted!;
    const call = await ke1For(c, 'alice', 'pw');
    await r.apply(call.env);
    const p = r.propose();
    await r.write(p);
    await r.captureFromStorage(p.index);

    // Crash before persist: the RAM state (pending KE2, captured position) is gone.
    const core = r.reboot();
    expect(core.status()).toMatchObject({ leader: false, persisted, awaiting: persisted });
    expect(core.openRequest(call.env)).toMatchObject({ type: 'Refused', code: 'NotLeader' });
    expect(core.statement().type).toBe('NothingPersisted');

    // Catch up from storage, as an agent would: the entry that counts the guess is captured.
    const rows = await r.storage.readEntries(persisted.index, 16);
    expect(core.captureNext(rows.map((x) => x.entry))).toMatchObject({ type: 'Ok', position: { index: p.index } });
    r.mustPersist();
    expect(core.becomeLeader(p.top).type).toBe('Ok');
    const after = core.commit([r.ownStatement()]);
    expect(after).toEqual({ type: 'Committed', index: p.index, released: [] });

    // A real agent takes over the same HSM directory and SQLite file: the guess was counted.
    await r.close();
    rigs.splice(rigs.indexOf(r), 1);
    sys = await startSystem({ dir: r.dir });
    expect(await sys.vault().status('alice')).toMatchObject({ state: 'active', guessesLeft: 4, failuresSinceLastSuccess: 1 });
    const rec = await sys.vault().recover('alice', 'pw');
    expect(rec.failuresBeforeThisLogin).toBe(1);
  });

  it('entry never written, then a crash: the guess is not counted and its KE2 never appears', async () => {
    const { r } = await rigWithAlice();
    const c = r.client();
    const persisted = r.core.status().persisted!;
    const call = await ke1For(c, 'alice', 'pw');
    await r.apply(call.env);
    r.propose();
    const core = r.reboot();
    const rows = await r.storage.readEntries(persisted.index, 16);
    expect(rows.length).toBe(1);
    expect(core.captureNext(rows.map((x) => x.entry))).toMatchObject({ type: 'Ok', position: persisted });
    r.mustPersist();
    expect(core.becomeLeader(r.top).type).toBe('Ok');
    expect(core.commit([r.ownStatement()])).toEqual({ type: 'Committed', index: persisted.index, released: [] });
    expect(await r.client().status('alice')).toMatchObject({ guessesLeft: 5, failuresSinceLastSuccess: 0 });
  });

  it('an HSM whose NVRAM is ahead of storage refuses to serve until storage holds the entry that counted the guess', async () => {
    const { r } = await rigWithAlice();
    const c = r.client();
    const persisted = r.core.status().persisted!;
    const call = await ke1For(c, 'alice', 'pw');
    const handle = await r.apply(call.env);
    const p = r.propose();
    // The hostile agent feeds the entry to the HSM without writing it, and gets the KE2 out.
    expect(r.core.captureNext([p.entry]).type).toBe('Ok');
    r.mustPersist();
    const got = r.core.commit([r.ownStatement()]);
    expect(got.type === 'Committed' && got.released.map((x) => x.handle)).toEqual([handle]);

    // After a crash, storage (which never got the entry) is refused: the count cannot be lost.
    const core = r.reboot();
    const rows = await r.storage.readEntries(persisted.index, 16);
    expect(core.captureNext(rows.map((x) => x.entry))).toEqual({ type: 'NotMyPosition', index: persisted.index });
    expect(core.becomeLeader(r.top).type).toBe('NotCaughtUp');
    expect(core.statement().type).toBe('NothingPersisted');
    await r.close();
    rigs.splice(rigs.indexOf(r), 1);
    const refused = await startSystem({ dir: r.dir }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ProtocolError);
    expect((refused as ProtocolError).code).toBe('Halted');

    // Only storage that holds that very entry brings the HSM back, with the guess counted.
    const storage = new SqliteStorage(join(r.dir, 'vault.sqlite'));
    expect((await storage.appendEntry({ index: p.index, entry: p.entry, top: p.top }, p.added, p.removed)).type).toBe('Appended');
    await storage.close();
    sys = await startSystem({ dir: r.dir });
    expect(await sys.vault().status('alice')).toMatchObject({ state: 'active', guessesLeft: 4, failuresSinceLastSuccess: 1 });
  });
});

describe('I1: a KE1 flood', () => {
  it('a client that sends KE1 again and again gets at most maxGuesses KE2s, then Locked, and then the right password fails too', async () => {
    sys = await startSystem();
    const s = sys;
    const c = new RawClient(pinnedFleetOf(s.agent), (env) => s.transport.send(env));
    await c.register('flood', 'right', 3);
    const outcomes: string[] = [];
    for (let i = 0; i < 6; i++) outcomes.push(outcomeOf((await c.ke1('flood', i % 2 ? 'right' : 'wrong')).reply));
    expect(outcomes).toEqual(['Ok', 'Ok', 'Ok', 'Locked', 'Locked', 'Locked']);
    expect((await c.status('flood')).state).toBe('tombstone');
    const e = await s.vault().recover('flood', 'right').catch((x: unknown) => x);
    expect(e).toBeInstanceOf(VaultError);
    expect((e as VaultError).code).toBe('Locked');
  });

  it('KE1s sent all at once, fresh and replayed, land in shared batches and still yield at most maxGuesses KE2s', async () => {
    sys = await startSystem();
    const s = sys;
    const c = new RawClient(pinnedFleetOf(s.agent), (env) => s.transport.send(env));
    await c.register('burst', 'right', 4);
    const one = await ke1For(c, 'burst', 'right');
    const calls = [one, one, one, ...(await Promise.all(Array.from({ length: 9 }, () => ke1For(c, 'burst', 'right'))))];
    const batchesBefore = s.agent.stats.batches;
    const replies = await Promise.all(calls.map((x) => c.deliver(x)));
    expect(s.agent.stats.batches - batchesBefore).toBeLessThan(calls.length);
    const outcomes = replies.map(outcomeOf);
    expect(outcomes.filter((o) => o === 'Ok').length).toBe(4);
    expect(outcomes.filter((o) => o !== 'Ok').every((o) => o === 'Locked')).toBe(true);
    // Each KE2 handed out names a distinct guess: guesses left 3, 2, 1, 0.
    const left = replies.filter((x) => outcomeOf(x) === 'Ok').map((x) => expectOk(x, 'RecoverStart').guessesLeft).sort((a, b) => a - b);
    expect(left).toEqual([0, 1, 2, 3]);
    expect((await c.status('burst')).state).toBe('tombstone');
  });
});
