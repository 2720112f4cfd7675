/**
 * I1a no replay: every state-changing request is single-use and bound to the record's generation
 * and attempt. Replaying an old RegisterFinish, KE3, ChangePassword or Delete (the very same
 * envelope, or its inner request in a fresh HPKE envelope), or splicing its sealed state into
 * another request, changes nothing and releases nothing.
 *
 * The attacker here is the operator (who sees every envelope in `sys.seen` and can resubmit it to
 * the agent) or a hostile client (who can re-wrap its own old requests).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startSystem, vaultCode, type InProcessSystem } from '../helpers/system.js';
import { RawClient, expectOk, flipBit, outcomeOf, pinnedFleetOf, type SealedCall } from '../helpers/hostile.js';
import { clientStartRegistration } from '../../src/crypto/opaque.js';
import { bytesEqual } from '../../src/crypto/bytes.js';

let sys: InProcessSystem | undefined;
afterEach(async () => {
  await sys?.close();
  sys = undefined;
});

async function start(): Promise<{ sys: InProcessSystem; c: RawClient }> {
  sys = await startSystem();
  const s = sys;
  const c = new RawClient(pinnedFleetOf(s.agent), (env) => s.transport.send(env));
  return { sys: s, c };
}

/** The operator resubmits an envelope it saw, byte for byte; the original requester opens the answer. */
async function replayEnvelope(s: InProcessSystem, call: SealedCall): Promise<string> {
  expect(s.seen.envelopes.some((e) => bytesEqual(e.ciphertext, call.env.ciphertext) && bytesEqual(e.enc, call.env.enc))).toBe(true);
  const r = await s.agent.submit(call.env);
  if (r.type === 'Error') return `transport:${r.code}`;
  const res = await call.open(r.body);
  return res.outcome === 'Ok' ? 'Ok' : res.code;
}

describe('I1a: replayed logins', () => {
  it('a KE3 replayed after its login succeeded is refused, does not reset the counter and releases no W', async () => {
    const { sys, c } = await start();
    await c.register('alice', 'right', 5);
    const session = await c.login('alice', 'right');
    // Someone spends two guesses with wrong passwords after the successful login.
    for (let i = 0; i < 2; i++) {
      const st = await c.ke1('alice', 'wrong');
      expect(outcomeOf(st.reply)).toBe('Ok');
      expect(await c.ke3('alice', 'wrong', st)).toBeNull();
    }
    expect(await c.status('alice')).toMatchObject({ state: 'active', guessesLeft: 3, failuresSinceLastSuccess: 2 });

    // The very same envelope, resubmitted by the operator.
    expect(await replayEnvelope(sys, session.finish)).toBe('StaleState');
    // The same inner request in a fresh envelope (a client replaying its own KE3).
    const fresh = await c.call(session.finish.request);
    expect(fresh.reply).toMatchObject({ kind: 'response', res: { type: 'RecoverFinish', outcome: 'Error', code: 'StaleState', guesses: { guessesLeft: 3, failuresSinceLastSuccess: 2 } } });

    // The counter was not reset: still two failures, three guesses left.
    expect(await c.status('alice')).toMatchObject({ state: 'active', guessesLeft: 3, failuresSinceLastSuccess: 2 });
  });

  it('a valid KE3 that was held back is refused once a newer KE1 has been counted', async () => {
    const { sys, c } = await start();
    await c.register('bob', 'right', 5);
    const st = await c.ke1('bob', 'right');
    const held = await c.ke3('bob', 'right', st);
    expect(held).not.toBeNull();
    // The operator withholds the KE3, and meanwhile guesses twice.
    for (let i = 0; i < 2; i++) expect(outcomeOf((await c.ke1('bob', 'wrong')).reply)).toBe('Ok');
    expect(await c.status('bob')).toMatchObject({ guessesLeft: 2, failuresSinceLastSuccess: 3 });

    // The held-back KE3 (a correct password!) no longer resets anything or releases W.
    const late = await c.deliver(held!.call);
    expect(outcomeOf(late)).toBe('StaleState');
    expect(await replayEnvelope(sys, held!.call)).toBe('StaleState');
    expect(await c.status('bob')).toMatchObject({ guessesLeft: 2, failuresSinceLastSuccess: 3 });
  });

  it('a login state is consumed by its first KE3, even a failed one: the right KE3 after it releases nothing', async () => {
    const { c } = await start();
    await c.register('ned', 'right', 5);
    const st = await c.ke1('ned', 'right');
    const good = await c.ke3('ned', 'right', st);
    expect(good).not.toBeNull();
    const forged = await c.call({ type: 'RecoverFinish', userId: 'ned', ke3: new Uint8Array(64).fill(7), state: good!.call.request.state });
    expect(forged.reply).toMatchObject({ kind: 'response', res: { outcome: 'Error', code: 'WrongPassword', guesses: { guessesLeft: 4, failuresSinceLastSuccess: 1 } } });
    expect(outcomeOf(await c.deliver(good!.call))).toBe('StaleState');
    expect(await c.status('ned')).toMatchObject({ guessesLeft: 4, failuresSinceLastSuccess: 1 });
  });

  it('a replayed KE1 is counted as a new guess, never as a free one', async () => {
    const { sys, c } = await start();
    await c.register('kim', 'right', 3);
    const st = await c.ke1('kim', 'right');
    expect(outcomeOf(st.reply)).toBe('Ok');
    const answers: string[] = [];
    for (let i = 0; i < 4; i++) answers.push(await replayEnvelope(sys, st.call));
    // Two guesses were left after the first KE1: two more KE2s, then the record is destroyed.
    expect(answers).toEqual(['Ok', 'Ok', 'Locked', 'Locked']);
    expect((await c.status('kim')).state).toBe('tombstone');
  });
});

describe('I1a: replayed sealed login states', () => {
  it('a RecoverFinish carrying another user\'s login state is refused and leaves both records alone', async () => {
    const { c } = await start();
    await c.register('alice', 'pw-a', 5);
    await c.register('bob', 'pw-b', 5);
    // Bob (or the operator acting for him) runs a login and gets his sealed state.
    const bobStart = await c.ke1('bob', 'pw-b');
    const bobKe3 = await c.ke3('bob', 'pw-b', bobStart);
    expect(bobKe3).not.toBeNull();
    const aliceStart = await c.ke1('alice', 'pw-a');
    const aliceKe3 = await c.ke3('alice', 'pw-a', aliceStart);
    expect(aliceKe3).not.toBeNull();

    // Bob's state and KE3 presented for Alice, and Alice's for Bob.
    const spliced1 = await c.call({ type: 'RecoverFinish', userId: 'alice', ke3: bobKe3!.call.request.ke3, state: bobKe3!.call.request.state });
    expect(outcomeOf(spliced1.reply)).toBe('StaleState');
    const spliced2 = await c.call({ type: 'RecoverFinish', userId: 'bob', ke3: aliceKe3!.call.request.ke3, state: aliceKe3!.call.request.state });
    expect(outcomeOf(spliced2.reply)).toBe('StaleState');
    // Alice's own KE3 with Bob's state: also refused.
    const spliced3 = await c.call({ type: 'RecoverFinish', userId: 'alice', ke3: aliceKe3!.call.request.ke3, state: bobKe3!.call.request.state });
    expect(outcomeOf(spliced3.reply)).toBe('StaleState');

    // Nothing was consumed: both genuine KE3s still succeed, once.
    expect(outcomeOf(await c.deliver(aliceKe3!.call))).toBe('Ok');
    expect(outcomeOf(await c.deliver(bobKe3!.call))).toBe('Ok');
    expect(outcomeOf(await c.deliver(aliceKe3!.call))).toBe('StaleState');
  });

  it('a tampered, truncated or foreign sealed state in a RecoverFinish is refused and consumes nothing', async () => {
    const { c } = await start();
    const reg = await c.register('carol', 'pw', 5);
    const st = await c.ke1('carol', 'pw');
    const k = await c.ke3('carol', 'pw', st);
    expect(k).not.toBeNull();
    const { ke3, state } = k!.call.request;
    const other = expectOk((await c.call({ type: 'RegisterStart', userId: 'carol-2', registrationRequest: reg.start.request.registrationRequest })).reply, 'RegisterStart');
    const variants: Uint8Array[] = [
      flipBit(state, 0), // the AES-GCM nonce
      flipBit(state, 20), // the ciphertext
      flipBit(state, state.length - 1), // the tag
      state.subarray(0, state.length - 1),
      new Uint8Array(0),
      reg.start.request.registrationRequest, // some other bytes the client saw
      other.state, // a sealed registration state, under the fleet's register-state key
    ];
    for (const bad of variants) {
      const r = await c.call({ type: 'RecoverFinish', userId: 'carol', ke3, state: bad });
      expect(outcomeOf(r.reply)).toBe('StaleState');
    }
    expect(await c.status('carol')).toMatchObject({ guessesLeft: 4, failuresSinceLastSuccess: 1 });
    // The genuine KE3 still works: the refused ones consumed nothing.
    expect(outcomeOf(await c.deliver(k!.call))).toBe('Ok');
    expect(await c.status('carol')).toMatchObject({ guessesLeft: 5, failuresSinceLastSuccess: 0 });
  });

  it('a session token presented as a login state is refused', async () => {
    const { c } = await start();
    await c.register('dan', 'pw', 5);
    const s = await c.login('dan', 'pw');
    const st = await c.ke1('dan', 'pw');
    const k = await c.ke3('dan', 'pw', st);
    const r = await c.call({ type: 'RecoverFinish', userId: 'dan', ke3: k!.call.request.ke3, state: s.token });
    expect(outcomeOf(r.reply)).toBe('StaleState');
  });
});

describe('I1a: a destroyed record stays destroyed', () => {
  it('a RegisterFinish replayed after the guesses ran out does not bring the record back', async () => {
    const { sys, c } = await start();
    const reg = await c.register('erin', 'pw', 2);
    for (let i = 0; i < 2; i++) expect(outcomeOf((await c.ke1('erin', 'guess')).reply)).toBe('Ok');
    expect(outcomeOf((await c.ke1('erin', 'guess')).reply)).toBe('Locked');
    expect((await c.status('erin')).state).toBe('tombstone');

    expect(await replayEnvelope(sys, reg.finish)).toBe('StaleState');
    expect(outcomeOf((await c.call(reg.finish.request)).reply)).toBe('StaleState');

    expect((await c.status('erin')).state).toBe('tombstone');
    expect(await vaultCode(sys.vault().recover('erin', 'pw'))).toBe('Locked');
  });

  it('a RegisterFinish replayed after a Delete does not bring the record back', async () => {
    const { sys, c } = await start();
    const reg = await c.register('fay', 'pw', 5);
    await c.delete(await c.login('fay', 'pw'));
    expect((await c.status('fay')).state).toBe('tombstone');

    expect(await replayEnvelope(sys, reg.finish)).toBe('StaleState');
    expect(outcomeOf((await c.call(reg.finish.request)).reply)).toBe('StaleState');

    expect((await c.status('fay')).state).toBe('tombstone');
    expect(await vaultCode(sys.vault().recover('fay', 'pw'))).toBe('Locked');
  });

  it('a RegisterFinish replayed over a re-registration neither overwrites it nor resets its counter', async () => {
    const { sys, c } = await start();
    const first = await c.register('gus', 'old', 5);
    await c.delete(await c.login('gus', 'old'));
    await c.register('gus', 'new', 5);
    expect(outcomeOf((await c.ke1('gus', 'guess')).reply)).toBe('Ok');

    expect(await replayEnvelope(sys, first.finish)).toBe('AlreadyRegistered');
    expect(outcomeOf((await c.call(first.finish.request)).reply)).toBe('AlreadyRegistered');

    expect(await c.status('gus')).toMatchObject({ state: 'active', guessesLeft: 4, failuresSinceLastSuccess: 1 });
    expect(await vaultCode(sys.vault().recover('gus', 'old'))).toBe('WrongPassword');
    expect(await vaultCode(sys.vault().recover('gus', 'new'))).toBe('ok');
  });
});

describe('I1a: replayed session operations', () => {
  it('a replayed ChangePasswordFinish or ChangePasswordStart changes nothing and cannot roll the password back', async () => {
    const { sys, c } = await start();
    const { key } = await c.register('hal', 'one', 5);
    const first = await c.changePassword(await c.login('hal', 'one'), 'two', 5);
    const second = await c.changePassword(await c.login('hal', 'two'), 'three', 5);
    expect(second.generation).toBe(first.generation + 1);

    for (const call of [first.finish, first.start, second.finish, second.start]) {
      expect(await replayEnvelope(sys, call)).toBe('StaleState');
      expect(outcomeOf((await c.call(call.request)).reply)).toBe('StaleState');
    }

    // The password that works is still the latest, at the same generation, with the same K.
    expect(await vaultCode(sys.vault().recover('hal', 'two'))).toBe('WrongPassword');
    const s = await c.login('hal', 'three');
    expect(s.generation).toBe(second.generation);
    expect(await c.unwrap(s.exportKey, 'hal', s.wrappedKey)).toEqual(key);
  });

  it('a replayed Delete does not destroy the record registered after it', async () => {
    const { sys, c } = await start();
    await c.register('ivy', 'pw-1', 5);
    const del = await c.delete(await c.login('ivy', 'pw-1'));
    const again = await c.register('ivy', 'pw-2', 5);

    expect(await replayEnvelope(sys, del)).toBe('StaleState');
    expect(outcomeOf((await c.call(del.request)).reply)).toBe('StaleState');

    expect(await c.status('ivy')).toMatchObject({ state: 'active', guessesLeft: 5 });
    const s = await c.login('ivy', 'pw-2');
    expect(s.generation).toBe(again.generation);
  });

  it('a replayed Delete of a deleted record answers Locked and changes nothing', async () => {
    const { sys, c } = await start();
    await c.register('jo', 'pw', 5);
    const del = await c.delete(await c.login('jo', 'pw'));
    expect(await replayEnvelope(sys, del)).toBe('Locked');
    expect((await c.status('jo')).state).toBe('tombstone');
  });

  it('a Delete held back past a later login is refused', async () => {
    const { c } = await start();
    await c.register('lea', 'pw', 5);
    const s1 = await c.login('lea', 'pw');
    const held = await c.sessionOp(s1, { type: 'Delete' as const, userId: 'lea', auth: { token: s1.token, mac: new Uint8Array(32) } });
    await c.login('lea', 'pw');
    expect(outcomeOf(await c.deliver(held))).toBe('StaleState');
    expect((await c.status('lea')).state).toBe('active');
  });

  it('a session operation whose payload was altered is refused', async () => {
    const { c } = await start();
    const { key } = await c.register('max', 'pw', 5);
    const s = await c.login('max', 'pw');
    const cp = await c.sessionOp(s, { type: 'ChangePasswordStart' as const, userId: 'max', auth: { token: s.token, mac: new Uint8Array(32) }, registrationRequest: clientStartRegistration('new').request });
    // Same token and MAC, another blinded element: not what the session authorised.
    const altered = { ...cp.request, registrationRequest: flipBit(cp.request.registrationRequest, 3) };
    expect(outcomeOf((await c.call(altered)).reply)).toBe('BadSessionMac');
    // Same MAC moved to a Delete: refused.
    expect(outcomeOf((await c.call({ type: 'Delete', userId: 'max', auth: cp.request.auth })).reply)).toBe('BadSessionMac');
    // Same token and MAC for another user: refused.
    expect(outcomeOf((await c.call({ ...cp.request, userId: 'other' })).reply)).toBe('BadSessionMac');
    expect((await c.status('max')).state).toBe('active');
    const again = await c.login('max', 'pw');
    expect(await c.unwrap(again.exportKey, 'max', again.wrappedKey)).toEqual(key);
  });
});
