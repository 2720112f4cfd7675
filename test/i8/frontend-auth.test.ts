/**
 * I8 at the front end's own checks: the per-account KE1 limit (429 RateLimited after N
 * RecoverStarts per tag per day; nothing else limited) and JWT app sessions (valid token for the
 * right user passes; wrong user, expired, not yet valid, bad signature, alg none, alg confusion,
 * wrong issuer or audience, and garbage tokens are 401 Unauthorized). Refusals at the front end
 * never reach the HSM: the log does not move and no guess is spent.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { exportJWK, generateKeyPair, SignJWT, base64url, type JWK, type CryptoKey as JoseKey } from 'jose';
import { jwtSessions } from '../../src/frontend/auth.js';
import { VaultError } from '../../src/client/vault.js';
import { RawClient, sealCall, startHttpSystem, type HttpReply, type HttpSystem } from '../helpers/http-system.js';

function expectError(r: HttpReply, status: number, code: string): void {
  expect(r.status, r.text).toBe(status);
  expect(r.json).toEqual({ error: { code, message: expect.any(String) as string } });
  expect((r.json as { error: { message: string } }).error.message.length).toBeGreaterThan(0);
}

describe('I8: the KE1 rate limit per account tag', () => {
  const LIMIT = 3;
  let h: HttpSystem;
  let raw: RawClient;

  beforeAll(async () => {
    h = await startHttpSystem({ ke1PerTagPerDay: LIMIT });
    raw = new RawClient(h);
  });
  afterAll(async () => {
    await h?.close();
  });

  it(`allows ${LIMIT} RecoverStarts per tag, then answers 429 RateLimited without reaching the HSM`, async () => {
    const u = 'limited@example.org';
    await raw.register(u, 'pw', 10);
    for (let i = 0; i < LIMIT; i++) {
      const k = await raw.ke1(u, 'wrong');
      expect(k.http.status).toBe(200);
      expect(k.res).toMatchObject({ outcome: 'Ok', guessesLeft: 10 - i - 1 });
    }
    const before = await raw.status(u);
    const index = await h.logIndex();
    for (let i = 0; i < 5; i++) {
      const k = await raw.ke1(u, 'pw');
      expectError(k.http, 429, 'RateLimited');
    }
    // Even a malformed KE1 for this tag is limited before anything else looks at it.
    const c = await sealCall(h.fleet, { type: 'RecoverStart', userId: u, ke1: new Uint8Array(96) });
    expectError(await h.post(JSON.stringify({ ...c.json, ct: 'AAAA' })), 429, 'RateLimited');
    expect(await h.logIndex()).toBe(index);
    expect(await raw.status(u)).toEqual(before);
    expect(before.guessesLeft).toBe(10 - LIMIT);
  });

  it('limits nothing but RecoverStart, and only for its own tag', async () => {
    const u = 'limited@example.org';
    // Status, RegisterStart, RecoverFinish, session operations: not limited (sealed refusals are fine).
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('Status', 'RegisterStart', 'RecoverFinish', 'Delete', 'ChangePasswordStart') as fc.Arbitrary<'Status' | 'RegisterStart' | 'RecoverFinish' | 'Delete' | 'ChangePasswordStart'>, async (type) => {
        const auth = { token: new Uint8Array(64), mac: new Uint8Array(32) };
        const req =
          type === 'Status' ? { type, userId: u, nonce: new Uint8Array(4) }
          : type === 'RegisterStart' ? { type, userId: u, registrationRequest: new Uint8Array(32).fill(1) }
          : type === 'RecoverFinish' ? { type, userId: u, ke3: new Uint8Array(64), state: new Uint8Array(64) }
          : type === 'Delete' ? { type, userId: u, auth }
          : { type, userId: u, auth, registrationRequest: new Uint8Array(32) };
        const r = await raw.call(req);
        expect(r.http.status, r.http.text).toBe(200);
      }),
      { numRuns: 20 },
    );
    // Another account's KE1 is not affected.
    const other = 'not-limited@example.org';
    await raw.register(other, 'pw');
    expect((await raw.login(other, 'pw')).finish.outcome).toBe('Ok');
  });
});

describe('I8: JWT app sessions', () => {
  const ISSUER = 'https://app.example.org';
  const AUDIENCE = 'bkv';
  let h: HttpSystem;
  let key: JoseKey;
  let otherKey: JoseKey;
  let jwk: JWK;

  const token = (sub: string | undefined, o: { exp?: number | string; nbf?: number | string; iss?: string; aud?: string; key?: JoseKey; kid?: string; claims?: Record<string, unknown> } = {}) => {
    const jwt = new SignJWT({ ...(sub === undefined ? {} : { sub }), ...(o.claims ?? {}) })
      .setProtectedHeader({ alg: 'ES256', kid: o.kid ?? 'k1' })
      .setIssuer(o.iss ?? ISSUER)
      .setAudience(o.aud ?? AUDIENCE)
      .setIssuedAt()
      .setExpirationTime(o.exp ?? '5m');
    if (o.nbf !== undefined) jwt.setNotBefore(o.nbf);
    return jwt.sign(o.key ?? key);
  };

  beforeAll(async () => {
    ({ privateKey: otherKey } = await generateKeyPair('ES256'));
    const pair = await generateKeyPair('ES256', { extractable: true });
    key = pair.privateKey;
    jwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
    h = await startHttpSystem({ sessions: jwtSessions({ jwks: { keys: [jwk] }, issuer: ISSUER, audience: AUDIENCE }), ke1PerTagPerDay: 2 });
  });
  afterAll(async () => {
    await h?.close();
  });

  it('a valid token for the right user passes: register, recover, status', async () => {
    const t = await token('alice');
    const v = h.vault(() => t);
    const { key: k } = await v.register('alice', 'pw');
    expect((await v.recover('alice', 'pw')).key).toEqual(k);
    expect((await v.status('alice')).state).toBe('active');
  });

  it('the SDK reports Unauthorized for a token of another user', async () => {
    const t = await token('bob');
    const index = await h.logIndex();
    const err = await h.vault(() => t).status('alice').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VaultError);
    expect((err as VaultError).code).toBe('Unauthorized');
    expect(await h.logIndex()).toBe(index);
  });

  it('bad tokens are 401 Unauthorized and reach nothing', async () => {
    const body = JSON.stringify((await sealCall(h.fleet, { type: 'RecoverStart', userId: 'alice', ke1: new Uint8Array(96).fill(2) })).json);
    const now = Math.floor(Date.now() / 1000);
    const [, payload] = (await token('alice')).split('.');
    const none = `${base64url.encode(JSON.stringify({ alg: 'none', typ: 'JWT' }))}.${payload}.`;
    const hs256 = await new SignJWT({ sub: 'alice' }).setProtectedHeader({ alg: 'HS256', kid: 'k1' }).setIssuer(ISSUER).setAudience(AUDIENCE).setExpirationTime('5m').sign(new TextEncoder().encode(JSON.stringify(jwk)));
    const good = await token('alice');
    const [gh, gp, gs] = good.split('.') as [string, string, string];
    const flippedSig = `${gh}.${gp}.${gs.slice(0, 10)}${gs[10] === 'A' ? 'B' : 'A'}${gs.slice(11)}`;
    const otherPayload = `${gh}.${base64url.encode(JSON.stringify({ ...JSON.parse(new TextDecoder().decode(base64url.decode(gp))), sub: 'mallory' }))}.${gs}`;
    const cases: [string, string | undefined][] = [
      ['wrong user', `Bearer ${await token('bob')}`],
      ['expired', `Bearer ${await token('alice', { exp: now - 60 })}`],
      ['not yet valid', `Bearer ${await token('alice', { nbf: now + 3600 })}`],
      ['bad signature (another key, same kid)', `Bearer ${await token('alice', { key: otherKey })}`],
      ['unknown kid', `Bearer ${await token('alice', { kid: 'k2' })}`],
      ['flipped signature', `Bearer ${flippedSig}`],
      ['payload swapped under a valid signature', `Bearer ${otherPayload}`],
      ['alg none', `Bearer ${none}`],
      ['alg confusion (HS256 keyed with the public JWK)', `Bearer ${hs256}`],
      ['wrong issuer', `Bearer ${await token('alice', { iss: 'https://evil.example' })}`],
      ['wrong audience', `Bearer ${await token('alice', { aud: 'other' })}`],
      ['no sub', `Bearer ${await token(undefined)}`],
      ['empty sub', `Bearer ${await token('')}`],
      ['sub too long for a user id', `Bearer ${await token('a'.repeat(300))}`],
      ['no header', undefined],
      ['Basic scheme', `Basic ${Buffer.from('alice:pw').toString('base64')}`],
      ['empty bearer', 'Bearer '],
      ['lower-case scheme', `bearer ${good}`],
      ['two tokens', `Bearer ${good} ${good}`],
      ['over 8192 characters', `Bearer ${'a'.repeat(9000)}`],
    ];
    const index = await h.logIndex();
    for (const [name, auth] of cases) {
      const r = await h.post(body, { headers: auth === undefined ? {} : { authorization: auth } });
      expect(r.status, `${name}: ${r.text}`).toBe(401);
      expectError(r, 401, 'Unauthorized');
    }
    // Random garbage tokens.
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.stringMatching(/^[A-Za-z0-9._-]{1,300}$/), fc.tuple(fc.base64String(), fc.base64String(), fc.base64String()).map((p) => p.join('.'))), async (t) => {
        expectError(await h.post(body, { headers: { authorization: `Bearer ${t}` } }), 401, 'Unauthorized');
      }),
      { numRuns: 100 },
    );
    expect(await h.logIndex()).toBe(index);
    // A good token still works afterwards.
    const ok = await h.post(body, { headers: { authorization: `Bearer ${good}` } });
    expect(ok.status, ok.text).toBe(200);
  });

  it('KE1s refused as Unauthorized do not use up the real user\'s KE1 budget', async () => {
    const t = await token('carol');
    const v = h.vault(() => t);
    await v.register('carol', 'pw');
    const mallory = await token('mallory');
    const body = JSON.stringify((await sealCall(h.fleet, { type: 'RecoverStart', userId: 'carol', ke1: new Uint8Array(96).fill(2) })).json);
    for (let i = 0; i < 5; i++) expectError(await h.post(body, { headers: { authorization: `Bearer ${mallory}` } }), 401, 'Unauthorized');
    // carol's own two KE1s of the day (limit 2) still pass (guessesLeft counts the KE1 itself).
    expect((await v.recover('carol', 'pw')).guessesLeft).toBe(9);
    expect((await v.recover('carol', 'pw')).guessesLeft).toBe(9);
    const third = await v.recover('carol', 'pw').catch((e: unknown) => e);
    expect((third as VaultError).code).toBe('RateLimited');
  });
});
