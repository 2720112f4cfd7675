import { afterEach, describe, expect, it } from 'vitest';
import { startSystem, vaultCode, type InProcessSystem } from './helpers/system.js';
import { VaultError } from '../src/client/vault.js';

let sys: InProcessSystem | undefined;
afterEach(async () => {
  await sys?.close();
  sys = undefined;
});

describe('vault, one HSM, in process', () => {
  it('registers and recovers a backup key', async () => {
    sys = await startSystem();
    const v = sys.vault();
    expect((await v.status('alice')).state).toBe('none');
    const { key } = await v.register('alice', 'correct horse', { maxGuesses: 5 });
    expect(key.length).toBe(32);
    const st = await v.status('alice');
    expect(st).toMatchObject({ state: 'active', maxGuesses: 5, guessesLeft: 5 });
    const r = await v.recover('alice', 'correct horse');
    expect(r.key).toEqual(key);
    expect((await v.status('alice')).guessesLeft).toBe(5);
  });

  it('counts wrong passwords and resets on success', async () => {
    sys = await startSystem();
    const v = sys.vault();
    await v.register('bob', 'pw-1', { maxGuesses: 3 });
    const e = await v.recover('bob', 'nope').catch((x: VaultError) => x);
    expect(e).toBeInstanceOf(VaultError);
    expect((e as VaultError).code).toBe('WrongPassword');
    expect((e as VaultError).guesses?.guessesLeft).toBe(2);
    const ok = await v.recover('bob', 'pw-1');
    expect(ok.failuresBeforeThisLogin).toBe(1);
    expect((await v.status('bob')).guessesLeft).toBe(3);
  });

  it('changes the password and deletes', async () => {
    sys = await startSystem();
    const v = sys.vault();
    const { key } = await v.register('carol', 'old');
    await v.changePassword('carol', 'old', 'new');
    expect(await vaultCode(v.recover('carol', 'old'))).toBe('WrongPassword');
    expect((await v.recover('carol', 'new')).key).toEqual(key);
    await v.delete('carol', 'new');
    expect((await v.status('carol')).state).toBe('tombstone');
    expect(await vaultCode(v.recover('carol', 'new'))).toBe('Locked');
  });
});
