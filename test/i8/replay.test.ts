/**
 * I8 and I1a over HTTP: replayed and out-of-order requests of every state-changing type get a
 * clear (sealed) refusal and change nothing. A replay passes the edge and is applied by the HSM
 * (its answer is sealed to the original sender, who alone can read it: we keep the sender's HPKE
 * context to open it), so "nothing changed" is checked through the record's status, not the
 * log index: every applied request, refused or not, is logged as a read.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { RawClient, startHttpSystem, BACKUP_KEY, type HttpSystem, type SealedCall } from '../helpers/http-system.js';
import type { ErrorCode } from '../../src/protocol/errors.js';
import type { VaultResponse } from '../../src/protocol/messages.js';

let h: HttpSystem;
let raw: RawClient;
let n = 0;
const fresh = (what: string) => `${what}-${++n}@replay.test`;

beforeAll(async () => {
  h = await startHttpSystem();
  raw = new RawClient(h);
});

afterAll(async () => {
  await h?.close();
});

/** Sends `call` again, byte for byte: HTTP 200 with a sealed refusal of one of `codes`. */
async function expectReplayRefused(call: SealedCall, codes: ErrorCode[]): Promise<VaultResponse> {
  const r = await raw.replay(call);
  expect(r.http.status, r.http.text).toBe(200);
  expect(r.res?.outcome).toBe('Error');
  if (r.res?.outcome === 'Error') expect(codes).toContain(r.res.code);
  return r.res!;
}

async function status(userId: string) {
  const s = await raw.status(userId);
  return { state: s.state, maxGuesses: s.maxGuesses, guessesLeft: s.guessesLeft, failuresSinceLastSuccess: s.failuresSinceLastSuccess };
}

describe('I8/I1a: replayed requests change nothing', () => {
  it('RegisterStart and RegisterFinish, replayed over the active record, are refused', async () => {
    const u = fresh('reg');
    const { start, finish } = await raw.register(u, 'pw', 4);
    const before = await status(u);
    await expectReplayRefused(start, ['AlreadyRegistered']);
    await expectReplayRefused(finish, ['AlreadyRegistered']);
    expect(await status(u)).toEqual(before);
    expect((await h.vault().recover(u, 'pw')).key).toEqual(BACKUP_KEY);
  });

  it('RegisterFinish replayed after a delete does not resurrect the record (the tombstone stays)', async () => {
    const u = fresh('reg-del');
    const { finish } = await raw.register(u, 'pw');
    const { session } = await raw.login(u, 'pw');
    await raw.delete(session!);
    const before = await status(u);
    expect(before.state).toBe('tombstone');
    await expectReplayRefused(finish, ['StaleState']);
    expect(await status(u)).toEqual(before);
  });

  it('RecoverFinish (KE3) replayed after success, or after a failure, is refused and counts nothing', async () => {
    const u = fresh('ke3');
    await raw.register(u, 'pw', 5);
    const ok = await raw.login(u, 'pw');
    expect(ok.finish.outcome).toBe('Ok');
    const afterOk = await status(u);
    await expectReplayRefused(ok.ke3, ['StaleState']);
    expect(await status(u)).toEqual(afterOk);

    const bad = await raw.login(u, 'wrong');
    expect(bad.finish).toMatchObject({ outcome: 'Error', code: 'WrongPassword' });
    const afterBad = await status(u);
    expect(afterBad).toMatchObject({ guessesLeft: 4, failuresSinceLastSuccess: 1 });
    await expectReplayRefused(bad.ke3, ['StaleState']);
    await expectReplayRefused(ok.ke3, ['StaleState']);
    expect(await status(u)).toEqual(afterBad);
  });

  it('ChangePasswordStart and ChangePasswordFinish replayed after the change are refused; the new password stays', async () => {
    const u = fresh('chpw');
    await raw.register(u, 'old');
    const { session } = await raw.login(u, 'old');
    const ch = await raw.changePassword(session!, 'new');
    const before = await status(u);
    await expectReplayRefused(ch.finish, ['StaleState']);
    await expectReplayRefused(ch.start, ['StaleState']);
    expect(await status(u)).toEqual(before);
    expect((await raw.login(u, 'new')).finish.outcome).toBe('Ok');
    // The old password does not work (its guess is spent as a failure, as any wrong guess).
    expect((await raw.login(u, 'old')).finish).toMatchObject({ outcome: 'Error', code: 'WrongPassword' });
  });

  it('Delete replayed after the delete is refused; after a re-registration it does not delete the new record', async () => {
    const u = fresh('del');
    await raw.register(u, 'pw');
    const { session } = await raw.login(u, 'pw');
    const del = await raw.delete(session!);
    const tomb = await status(u);
    expect(tomb.state).toBe('tombstone');
    await expectReplayRefused(del, ['Locked', 'StaleState']);
    expect(await status(u)).toEqual(tomb);

    await raw.register(u, 'pw2');
    const active = await status(u);
    expect(active.state).toBe('active');
    await expectReplayRefused(del, ['StaleState', 'BadSessionMac']);
    expect(await status(u)).toEqual(active);
  });

  it('a replayed KE1 is one more counted guess, sealed to its original sender, and never resets anything', async () => {
    // KE1 is not single-use by design (DESIGN I1: the count happens at KE1); a replay is exactly
    // as good to an attacker as a fresh KE1 it could send itself: it spends one guess, its KE2
    // is sealed to the original sender, and the front end's per-tag limit and maxGuesses bound it.
    const u = fresh('ke1');
    await raw.register(u, 'pw', 3);
    const k = await raw.ke1(u, 'pw');
    expect(k.res).toMatchObject({ outcome: 'Ok', guessesLeft: 2 });
    const r = await raw.replay(k.sealed);
    expect(r.res).toMatchObject({ outcome: 'Ok', guessesLeft: 1 });
    // The first KE1's login state is now stale: its KE3 cannot be redeemed.
    expect(await status(u)).toMatchObject({ guessesLeft: 1, failuresSinceLastSuccess: 2 });
  });

  it('property: any sequence of replays of a finished session changes nothing', async () => {
    const u = fresh('prop');
    const reg = await raw.register(u, 'pw', 7);
    const s1 = await raw.login(u, 'pw');
    const ch = await raw.changePassword(s1.session!, 'pw2');
    const s2 = await raw.login(u, 'pw2');
    const bad = await raw.login(u, 'nope');
    const before = await status(u);
    // ChangePasswordFinish set maxGuesses to 10; one wrong guess since.
    expect(before).toMatchObject({ state: 'active', maxGuesses: 10, guessesLeft: 9, failuresSinceLastSuccess: 1 });
    const replayable: [string, SealedCall][] = [
      ['RegisterStart', reg.start],
      ['RegisterFinish', reg.finish],
      ['RecoverFinish#1', s1.ke3],
      ['ChangePasswordStart', ch.start],
      ['ChangePasswordFinish', ch.finish],
      ['RecoverFinish#2', s2.ke3],
      ['RecoverFinish#3', bad.ke3],
    ];
    await fc.assert(
      fc.asyncProperty(fc.array(fc.constantFrom(...replayable), { minLength: 1, maxLength: 3 }), async (seq) => {
        for (const [, c] of seq) await expectReplayRefused(c, ['AlreadyRegistered', 'StaleState', 'BadSessionMac']);
        expect(await status(u)).toEqual(before);
      }),
      { numRuns: 12 },
    );
    expect((await raw.login(u, 'pw2')).finish.outcome).toBe('Ok');
  });
});

describe('I8: out-of-order requests are refused and change nothing', () => {
  it('KE3 before any KE1, or with a state of the previous attempt after a newer KE1', async () => {
    const u = fresh('ooo-ke3');
    await raw.register(u, 'pw', 5);
    const random = globalThis.crypto.getRandomValues(new Uint8Array(64));
    const before = await status(u);
    const r0 = await raw.call({ type: 'RecoverFinish', userId: u, ke3: random, state: globalThis.crypto.getRandomValues(new Uint8Array(80)) });
    expect(r0.res).toMatchObject({ outcome: 'Error', code: 'StaleState' });
    expect(await status(u)).toEqual(before);

    // Two KE1s; the first one's KE3 arrives after the second: refused, the guesses stay spent.
    const { clientFinishLogin } = await import('../../src/crypto/opaque.js');
    const k1 = await raw.ke1(u, 'pw');
    const k2 = await raw.ke1(u, 'pw');
    const mid = await status(u);
    expect(mid.guessesLeft).toBe(3);
    const ids = { client: u, server: Buffer.from(h.fleet.fleetId).toString('hex') };
    if (k1.res?.outcome !== 'Ok' || k1.res.type !== 'RecoverStart' || k2.res?.outcome !== 'Ok' || k2.res.type !== 'RecoverStart') throw new Error('KE1 failed');
    const f1 = clientFinishLogin('pw', k1.clientState, k1.res.ke2, ids, 'insecure-fast-for-tests-only')!;
    const late = await raw.call({ type: 'RecoverFinish', userId: u, ke3: f1.ke3, state: k1.res.state });
    expect(late.res).toMatchObject({ outcome: 'Error', code: 'StaleState' });
    expect(await status(u)).toEqual(mid);
    // The newest attempt still completes, and resets the counter.
    const f2 = clientFinishLogin('pw', k2.clientState, k2.res.ke2, ids, 'insecure-fast-for-tests-only')!;
    expect((await raw.call({ type: 'RecoverFinish', userId: u, ke3: f2.ke3, state: k2.res.state })).res?.outcome).toBe('Ok');
    expect(await status(u)).toMatchObject({ guessesLeft: 5, failuresSinceLastSuccess: 0 });
  });

  it('RegisterFinish with another user\'s state, or with no RegisterStart at all', async () => {
    const a = fresh('ooo-a');
    const b = fresh('ooo-b');
    const { clientStartRegistration, clientFinishRegistration } = await import('../../src/crypto/opaque.js');
    const reg = clientStartRegistration('pw');
    const s = await raw.call({ type: 'RegisterStart', userId: a, registrationRequest: reg.request });
    if (s.res?.outcome !== 'Ok' || s.res.type !== 'RegisterStart') throw new Error('RegisterStart failed');
    const fin = clientFinishRegistration('pw', reg.state, s.res.registrationResponse, { client: a, server: Buffer.from(h.fleet.fleetId).toString('hex') }, 'insecure-fast-for-tests-only');
    const r1 = await raw.call({ type: 'RegisterFinish', userId: b, registrationRecord: fin.record, wrappedKey: new Uint8Array(60), maxGuesses: 10, state: s.res.state });
    expect(r1.res).toMatchObject({ outcome: 'Error', code: 'StaleState' });
    const r2 = await raw.call({ type: 'RegisterFinish', userId: b, registrationRecord: fin.record, wrappedKey: new Uint8Array(60), maxGuesses: 10, state: new Uint8Array(100) });
    expect(r2.res).toMatchObject({ outcome: 'Error', code: 'StaleState' });
    expect((await status(b)).state).toBe('none');
    expect((await status(a)).state).toBe('none');
  });

  it('session operations with a session of another user, an ended session, or a bad MAC', async () => {
    const a = fresh('sess-a');
    const b = fresh('sess-b');
    await raw.register(a, 'pa');
    await raw.register(b, 'pb');
    const sa = (await raw.login(a, 'pa')).session!;
    const sb = (await raw.login(b, 'pb')).session!;
    const beforeA = await status(a);
    const beforeB = await status(b);

    // A's session token used for B's record.
    const cross = await raw.call(await raw.authorise({ ...sa, userId: b }, { type: 'Delete', userId: b, auth: { token: sa.token, mac: new Uint8Array(32) } }));
    expect(cross.res).toMatchObject({ outcome: 'Error', code: 'BadSessionMac' });
    // A wrong MAC.
    const badMac = await raw.call({ type: 'Delete', userId: a, auth: { token: sa.token, mac: new Uint8Array(32).fill(9) } });
    expect(badMac.res).toMatchObject({ outcome: 'Error', code: 'BadSessionMac' });
    // A MAC for another operation (Delete's MAC on a ChangePasswordStart).
    const del = await raw.authorise(sa, { type: 'Delete', userId: a, auth: { token: sa.token, mac: new Uint8Array(32) } });
    const wrongOp = await raw.call({ type: 'ChangePasswordStart', userId: a, auth: del.auth, registrationRequest: new Uint8Array(32) });
    expect(wrongOp.res).toMatchObject({ outcome: 'Error', code: 'BadSessionMac' });
    // A garbage token.
    const garbage = await raw.call({ type: 'Delete', userId: a, auth: { token: new Uint8Array(200).fill(1), mac: new Uint8Array(32) } });
    expect(garbage.res).toMatchObject({ outcome: 'Error', code: 'BadSessionMac' });
    expect(await status(a)).toEqual(beforeA);
    expect(await status(b)).toEqual(beforeB);

    // A new KE1 ends A's session: its delete is now stale (the KE1 itself counts a guess).
    await raw.ke1(a, 'pa');
    const afterKe1 = await status(a);
    const stale = await raw.call(await raw.authorise(sa, { type: 'Delete', userId: a, auth: { token: sa.token, mac: new Uint8Array(32) } }));
    expect(stale.res).toMatchObject({ outcome: 'Error', code: 'StaleState' });
    expect(await status(a)).toEqual(afterKe1);

    // ChangePasswordFinish with a registration state from a plain RegisterStart (mode register).
    const rs = await raw.call({ type: 'RegisterStart', userId: fresh('other'), registrationRequest: (await import('../../src/crypto/opaque.js')).clientStartRegistration('x').request });
    if (rs.res?.outcome !== 'Ok' || rs.res.type !== 'RegisterStart') throw new Error('RegisterStart failed');
    const cf = await raw.call(await raw.authorise(sb, { type: 'ChangePasswordFinish', userId: b, auth: { token: sb.token, mac: new Uint8Array(32) }, registrationRecord: new Uint8Array(192), wrappedKey: new Uint8Array(60), maxGuesses: 10, state: rs.res.state }));
    expect(cf.res).toMatchObject({ outcome: 'Error', code: 'StaleState' });
    expect(await status(b)).toEqual(beforeB);
    expect((await raw.login(b, 'pb')).finish.outcome).toBe('Ok');
  });

  it('RecoverStart on no record and on a tombstone is refused without a write', async () => {
    const u = fresh('none');
    const r = await raw.ke1(u, 'pw');
    expect(r.res).toMatchObject({ outcome: 'Error', code: 'NotRegistered' });
    expect((await status(u)).state).toBe('none');
    await raw.register(u, 'pw');
    await raw.delete((await raw.login(u, 'pw')).session!);
    const t = await status(u);
    expect((await raw.ke1(u, 'pw')).res).toMatchObject({ outcome: 'Error', code: 'Locked' });
    expect(await status(u)).toEqual(t);
  });
});
