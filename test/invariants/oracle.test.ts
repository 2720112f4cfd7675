/**
 * I2 no OPRF oracle: every OPRF evaluation under the key of a user with an active record counts
 * as a guess or is refused, and OPRF keys are per registration, so evaluations gathered before a
 * registration are worthless after it.
 *
 * The OPRF output for a password guess, together with one KE2, lets an attacker check that guess
 * offline (the KE2's masked credential response opens under a key derived from it). So an
 * unmetered evaluation under a user's current OPRF key would be unmetered guessing.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startSystem, type InProcessSystem } from '../helpers/system.js';
import { RawClient, expectOk, outcomeOf, pinnedFleetOf } from '../helpers/hostile.js';
import { VaultError } from '../../src/client/vault.js';
import { bytesEqual, concatBytes } from '../../src/crypto/bytes.js';
import { clientFinishLogin, clientStartLogin, clientStartRegistration, opaqueReady } from '../../src/crypto/opaque.js';

let sys: InProcessSystem | undefined;
afterEach(async () => {
  await sys?.close();
  sys = undefined;
});

async function start(): Promise<{ sys: InProcessSystem; c: RawClient }> {
  sys = await startSystem();
  const s = sys;
  await opaqueReady;
  return { sys: s, c: new RawClient(pinnedFleetOf(s.agent), (env) => s.transport.send(env)) };
}

/** RFC 9807: the OPRF evaluation is the first 32 bytes of a registration response and of a KE2. */
const evaluated = (b: Uint8Array): Uint8Array => b.subarray(0, 32);

describe('I2: no OPRF evaluation over an active record outside a counted login', () => {
  it('RegisterStart for a user with an active record is refused and evaluates nothing', async () => {
    const { sys, c } = await start();
    await c.register('alice', 'pw', 5);
    for (let i = 0; i < 3; i++) {
      const r = await c.call({ type: 'RegisterStart', userId: 'alice', registrationRequest: clientStartRegistration(`guess-${i}`).request });
      expect(r.reply).toMatchObject({ kind: 'response', res: { type: 'RegisterStart', outcome: 'Error', code: 'AlreadyRegistered' } });
    }
    // The SDK reports the same, and the refusals cost the user nothing.
    const e = await sys.vault().register('alice', 'other').catch((x: unknown) => x);
    expect(e).toBeInstanceOf(VaultError);
    expect((e as VaultError).code).toBe('AlreadyRegistered');
    expect(await c.status('alice')).toMatchObject({ state: 'active', guessesLeft: 5, failuresSinceLastSuccess: 0 });
  });

  it('RegisterStart stays refused while guesses are being spent, up to the last one', async () => {
    const { c } = await start();
    await c.register('ann', 'pw', 2);
    for (let i = 0; i < 2; i++) {
      expect(outcomeOf((await c.ke1('ann', 'guess')).reply)).toBe('Ok');
      const r = await c.call({ type: 'RegisterStart', userId: 'ann', registrationRequest: clientStartRegistration('x').request });
      expect(outcomeOf(r.reply)).toBe('AlreadyRegistered');
    }
    expect(await c.status('ann')).toMatchObject({ state: 'active', guessesLeft: 0 });
  });

  it('ChangePasswordStart without a valid session evaluates nothing', async () => {
    const { c } = await start();
    await c.register('bea', 'pw', 5);
    await c.register('mallory', 'mine', 5);
    const own = await c.login('mallory', 'mine');
    const registrationRequest = clientStartRegistration('guess').request;
    // A made-up token, and Mallory's genuine token and MAC presented for Bea.
    const forged = await c.call({ type: 'ChangePasswordStart', userId: 'bea', auth: { token: new Uint8Array(80), mac: new Uint8Array(32) }, registrationRequest });
    expect(outcomeOf(forged.reply)).toBe('BadSessionMac');
    const mine = await c.sessionOp(own, { type: 'ChangePasswordStart' as const, userId: 'mallory', auth: { token: own.token, mac: new Uint8Array(32) }, registrationRequest });
    const stolen = await c.call({ ...mine.request, userId: 'bea' });
    expect(outcomeOf(stolen.reply)).toBe('BadSessionMac');
    expect(await c.status('bea')).toMatchObject({ state: 'active', guessesLeft: 5, failuresSinceLastSuccess: 0 });
  });
});

describe('I2: OPRF keys are per registration', () => {
  it('the same blinded element is evaluated under a fresh key at every RegisterStart', async () => {
    const { sys, c } = await start();
    const blinded = clientStartRegistration('pw').request;
    const a = expectOk((await c.call({ type: 'RegisterStart', userId: 'cat', registrationRequest: blinded })).reply, 'RegisterStart');
    const b = expectOk((await c.call({ type: 'RegisterStart', userId: 'cat', registrationRequest: blinded })).reply, 'RegisterStart');
    expect(bytesEqual(evaluated(a.registrationResponse), evaluated(b.registrationResponse))).toBe(false);
    // The server key in both is the fleet's OPAQUE key: only the OPRF key differs.
    const opaqueKey = sys.agent.publicKeys().opaque;
    expect(a.registrationResponse.subarray(32)).toEqual(opaqueKey);
    expect(b.registrationResponse.subarray(32)).toEqual(opaqueKey);
  });

  it('an OPRF output gathered by a RegisterStart before a registration does not open that registration', async () => {
    const { c } = await start();
    const password = 'the-real-password';
    // The attacker knows (or guesses right) the password, blinds it as a KE1 would, and has the
    // HSM evaluate the blinded element through a RegisterStart while the user has no record.
    const attacker = clientStartLogin(password);
    const blinded = attacker.ke1.subarray(0, 32);
    const before = expectOk((await c.call({ type: 'RegisterStart', userId: 'dora', registrationRequest: blinded })).reply, 'RegisterStart');

    // The user registers with that password.
    await c.register('dora', password, 5);

    // The attacker now gets one KE2 for the same blinded element: that costs a guess.
    const ke1 = await c.call({ type: 'RecoverStart', userId: 'dora', ke1: attacker.ke1 });
    const ke2 = expectOk(ke1.reply, 'RecoverStart');
    expect(await c.status('dora')).toMatchObject({ guessesLeft: 4, failuresSinceLastSuccess: 1 });

    // The evaluation under the registration's key differs from the one gathered before it.
    expect(bytesEqual(evaluated(before.registrationResponse), evaluated(ke2.ke2))).toBe(false);

    // Offline check of the guess with the pre-registration evaluation in place of the KE2's own:
    // the credential response does not open, so the pre-registration output tells nothing.
    const spliced = concatBytes(evaluated(before.registrationResponse), ke2.ke2.subarray(32));
    expect(clientFinishLogin(password, attacker.state, spliced, c.ids('dora'), 'insecure-fast-for-tests-only')).toBeNull();
    // Control: with the (counted) KE2 as sent, the same client state and password do open it.
    expect(clientFinishLogin(password, attacker.state, ke2.ke2, c.ids('dora'), 'insecure-fast-for-tests-only')).not.toBeNull();
  });

  it('an OPRF output gathered before a re-registration does not open the new registration', async () => {
    const { c } = await start();
    const password = 'same-password-again';
    await c.register('eve', password, 5);
    const s = await c.login('eve', password);
    await c.delete(s);
    // Between destruction and re-registration RegisterStart evaluates (no active record).
    const attacker = clientStartLogin(password);
    const before = expectOk((await c.call({ type: 'RegisterStart', userId: 'eve', registrationRequest: attacker.ke1.subarray(0, 32) })).reply, 'RegisterStart');
    await c.register('eve', password, 5);
    const ke2 = expectOk((await c.call({ type: 'RecoverStart', userId: 'eve', ke1: attacker.ke1 })).reply, 'RecoverStart');
    expect(bytesEqual(evaluated(before.registrationResponse), evaluated(ke2.ke2))).toBe(false);
    const spliced = concatBytes(evaluated(before.registrationResponse), ke2.ke2.subarray(32));
    expect(clientFinishLogin(password, attacker.state, spliced, c.ids('eve'), 'insecure-fast-for-tests-only')).toBeNull();
  });

  it('a registration state obtained before the user registered cannot overwrite the registration', async () => {
    const { sys, c } = await start();
    const early = expectOk((await c.call({ type: 'RegisterStart', userId: 'fred', registrationRequest: clientStartRegistration('attacker').request })).reply, 'RegisterStart');
    const reg = await c.register('fred', 'pw', 5);
    const r = await c.call({ ...reg.finish.request, state: early.state });
    expect(outcomeOf(r.reply)).toBe('AlreadyRegistered');
    expect((await sys.vault().recover('fred', 'pw')).key).toEqual(reg.key);
  });
});
