/**
 * I2a bounded re-registration: destruction leaves a tombstone that keeps the generation and
 * counts destructions; registrations after a destruction stop at the policy limit (default 2).
 * An operator that forces re-registration with the same password (say, by spending every guess
 * each time) can so obtain at most maxGuesses x (1 + limit) KE2s against one user id, ever.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startSystem, type InProcessSystem } from '../helpers/system.js';
import { RawClient, expectOk, outcomeOf, pinnedFleetOf } from '../helpers/hostile.js';
import { VaultError } from '../../src/client/vault.js';
import { DEFAULT_POLICY } from '../../src/hsm/keys.js';
import { clientStartRegistration } from '../../src/crypto/opaque.js';

let sys: InProcessSystem | undefined;
afterEach(async () => {
  await sys?.close();
  sys = undefined;
});

async function start(policy: { reRegistrationLimit?: number } = {}): Promise<{ sys: InProcessSystem; c: RawClient }> {
  sys = await startSystem({ policy });
  const s = sys;
  return { sys: s, c: new RawClient(pinnedFleetOf(s.agent), (env) => s.transport.send(env)) };
}

/** Sends KE1s until the record is destroyed; returns how many KE2s came back. */
async function exhaust(c: RawClient, userId: string, password: string): Promise<number> {
  let ke2s = 0;
  for (let i = 0; i < 300; i++) {
    const r = await c.ke1(userId, password);
    const o = outcomeOf(r.reply);
    if (o === 'Ok') {
      ke2s++;
      continue;
    }
    expect(o).toBe('Locked');
    return ke2s;
  }
  throw new Error('the record was never destroyed');
}

describe('I2a: registrations after destruction stop at the policy limit', () => {
  it('with the default limit, the fourth registration of a user id is refused and at most maxGuesses x 3 KE2s were ever given out', async () => {
    const { sys, c } = await start();
    const limit = DEFAULT_POLICY.reRegistrationLimit;
    expect(limit).toBe(2);
    const maxGuesses = 2;
    let totalKe2 = 0;
    let heldState: Uint8Array | undefined;
    for (let round = 0; round < 1 + limit; round++) {
      await c.register('victim', 'same-password', maxGuesses);
      // While the last allowed registration is active, RegisterStart is refused as usual (I2).
      if (round === limit) {
        expect(outcomeOf((await c.call({ type: 'RegisterStart', userId: 'victim', registrationRequest: clientStartRegistration('x').request })).reply)).toBe('AlreadyRegistered');
      }
      // The attacker uses the right password but never sends KE3: every KE2 is a guess.
      totalKe2 += await exhaust(c, 'victim', 'same-password');
      expect((await c.status('victim')).state).toBe('tombstone');
      // Keep a registration state issued at a tombstone that still allowed one more registration.
      if (round === limit - 1) {
        heldState = expectOk((await c.call({ type: 'RegisterStart', userId: 'victim', registrationRequest: clientStartRegistration('x').request })).reply, 'RegisterStart').state;
      }
    }
    expect(totalKe2).toBe(maxGuesses * (1 + limit));

    // Registration 1 + limit + 1 is refused, by RegisterStart (no OPRF evaluation) ...
    const refused = await c.call({ type: 'RegisterStart', userId: 'victim', registrationRequest: clientStartRegistration('same-password').request });
    expect(outcomeOf(refused.reply)).toBe('RegistrationLimit');
    const e = await sys.vault().register('victim', 'same-password', { maxGuesses }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(VaultError);
    expect((e as VaultError).code).toBe('RegistrationLimit');
    // ... and by RegisterFinish with a registration state issued before the last destruction.
    const fin = await c.call({ type: 'RegisterFinish', userId: 'victim', registrationRecord: new Uint8Array(192), wrappedKey: new Uint8Array(60), maxGuesses: 255, state: heldState! });
    expect(outcomeOf(fin.reply)).toBe('StaleState');

    // No further KE2 is available for this user id.
    expect(outcomeOf((await c.ke1('victim', 'same-password')).reply)).toBe('Locked');
    expect((await c.status('victim')).state).toBe('tombstone');
  });

  it('a registration state issued at the last allowed tombstone cannot be spent after the limit', async () => {
    const { c } = await start({ reRegistrationLimit: 1 });
    await c.register('u', 'pw', 1);
    expect(await exhaust(c, 'u', 'pw')).toBe(1);
    // Two registration states over the same tombstone: one used, one held back.
    const held = expectOk((await c.call({ type: 'RegisterStart', userId: 'u', registrationRequest: clientStartRegistration('pw').request })).reply, 'RegisterStart').state;
    await c.register('u', 'pw', 1);
    expect(await exhaust(c, 'u', 'pw')).toBe(1);
    // The held state names a generation that has passed: refused, and the limit still holds.
    const r = await c.call({ type: 'RegisterFinish', userId: 'u', registrationRecord: new Uint8Array(192), wrappedKey: new Uint8Array(60), maxGuesses: 255, state: held });
    expect(outcomeOf(r.reply)).toBe('StaleState');
    expect(outcomeOf((await c.call({ type: 'RegisterStart', userId: 'u', registrationRequest: clientStartRegistration('pw').request })).reply)).toBe('RegistrationLimit');
    expect((await c.status('u')).state).toBe('tombstone');
  });

  it('the limit comes from the fleet policy and counts deletions as destructions', async () => {
    const { sys, c } = await start({ reRegistrationLimit: 0 });
    await c.register('once', 'pw', 5);
    await c.delete(await c.login('once', 'pw'));
    expect((await c.status('once')).state).toBe('tombstone');
    const r = await c.call({ type: 'RegisterStart', userId: 'once', registrationRequest: clientStartRegistration('pw').request });
    expect(outcomeOf(r.reply)).toBe('RegistrationLimit');
    // Other user ids are unaffected.
    await sys.vault().register('twice', 'pw');
    expect((await c.status('twice')).state).toBe('active');
  });
});
