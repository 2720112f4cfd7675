/**
 * App-session verification (DESIGN section 4, "Channel"): the front end checks that the account
 * tag of a request is the tag of the signed-in user. Sessions are JWTs issued by the app's own
 * sign-in and verified against configured keys. `open` mode trusts any tag; `bkv dev` uses it
 * and says so at start.
 */
import { createLocalJWKSet, createRemoteJWKSet, jwtVerify, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import { bytesEqual } from '../crypto/bytes.js';
import { accountTag } from '../protocol/ids.js';

export type SessionVerifier = (authorization: string | undefined, tag: Uint8Array) => Promise<{ ok: true } | { ok: false; reason: string }>;

export const openSessions: SessionVerifier = async () => ({ ok: true });

export interface JwtConfig {
  /** A JWKS document (keys the app signs sessions with), or a URL serving one. */
  jwks: JSONWebKeySet | string;
  issuer: string;
  audience: string;
  /** The claim holding the user id; default "sub". */
  userClaim?: string;
}

export function jwtSessions(cfg: JwtConfig): SessionVerifier {
  const keys: JWTVerifyGetKey = typeof cfg.jwks === 'string' ? createRemoteJWKSet(new URL(cfg.jwks)) : createLocalJWKSet(cfg.jwks);
  const claim = cfg.userClaim ?? 'sub';
  return async (authorization, tag) => {
    const m = /^Bearer ([A-Za-z0-9._-]{1,8192})$/.exec(authorization ?? '');
    if (!m) return { ok: false, reason: 'missing bearer session token' };
    let payload;
    try {
      ({ payload } = await jwtVerify(m[1]!, keys, { issuer: cfg.issuer, audience: cfg.audience, algorithms: ['EdDSA', 'ES256', 'RS256'] }));
    } catch {
      return { ok: false, reason: 'session token does not verify' };
    }
    const user = payload[claim];
    if (typeof user !== 'string' || user.length === 0) return { ok: false, reason: 'session token names no user' };
    let expected: Uint8Array;
    try {
      expected = accountTag(user);
    } catch {
      return { ok: false, reason: 'session user id is not valid' };
    }
    return bytesEqual(expected, tag) ? { ok: true } : { ok: false, reason: 'account tag does not belong to the session user' };
  };
}
