/**
 * OPAQUE (RFC 9807) through @serenity-kit/opaque: ristretto255, 3DH, Argon2id key stretching.
 * Messages cross our boundaries as bytes; the library speaks base64url strings.
 *
 * The client's key-stretching parameters are fixed here, never taken from a server (DESIGN
 * section 4): the floor is Argon2id m = 64 MiB, t = 3, p = 4, the library's "memory-constrained"
 * preset. The only weaker setting is a named one for benchmarks and the test suite.
 */
import * as opaque from '@serenity-kit/opaque';
import { fromBase64Url, toBase64Url } from './bytes.js';

export const opaqueReady: Promise<void> = opaque.ready;

export type KeyStretching = 'memory-constrained' | 'rfc-recommended' | 'insecure-fast-for-tests-only';

function ksf(k: KeyStretching): 'memory-constrained' | 'rfc-recommended' | { 'argon2id-custom': { iterations: number; memory: number; parallelism: number } } {
  switch (k) {
    case 'memory-constrained':
      return 'memory-constrained';
    case 'rfc-recommended':
      return 'rfc-recommended';
    case 'insecure-fast-for-tests-only':
      return { 'argon2id-custom': { iterations: 1, memory: 8, parallelism: 1 } };
  }
}

export interface Identities {
  client: string;
  server: string;
}

const b = fromBase64Url;
const s = toBase64Url;

export { OPAQUE_SIZES } from './opaque-sizes.js';

// ---- server side (used only inside the HSM core) ----

export function createServerSetup(): Uint8Array {
  return b(opaque.server.createSetup());
}

export function serverPublicKey(setup: Uint8Array): Uint8Array {
  return b(opaque.server.getPublicKey(s(setup)));
}

export function serverRegistrationResponse(setup: Uint8Array, credentialId: string, request: Uint8Array): Uint8Array {
  return b(opaque.server.createRegistrationResponse({ serverSetup: s(setup), userIdentifier: credentialId, registrationRequest: s(request) }).registrationResponse);
}

export function serverStartLogin(setup: Uint8Array, credentialId: string, record: Uint8Array, ke1: Uint8Array, ids: Identities): { ke2: Uint8Array; state: Uint8Array } {
  const r = opaque.server.startLogin({ serverSetup: s(setup), userIdentifier: credentialId, registrationRecord: s(record), startLoginRequest: s(ke1), identifiers: ids });
  return { ke2: b(r.loginResponse), state: b(r.serverLoginState) };
}

/** Returns the session key, or null when KE3 does not authenticate. */
export function serverFinishLogin(state: Uint8Array, ke3: Uint8Array, ids: Identities): Uint8Array | null {
  try {
    return b(opaque.server.finishLogin({ serverLoginState: s(state), finishLoginRequest: s(ke3), identifiers: ids }).sessionKey);
  } catch {
    return null;
  }
}

// ---- client side (browser-safe) ----

export function clientStartRegistration(password: string): { state: string; request: Uint8Array } {
  const r = opaque.client.startRegistration({ password });
  return { state: r.clientRegistrationState, request: b(r.registrationRequest) };
}

export function clientFinishRegistration(password: string, state: string, response: Uint8Array, ids: Identities, stretching: KeyStretching): { record: Uint8Array; exportKey: Uint8Array; serverPublicKey: Uint8Array } {
  const r = opaque.client.finishRegistration({ password, clientRegistrationState: state, registrationResponse: s(response), identifiers: ids, keyStretching: ksf(stretching) });
  return { record: b(r.registrationRecord), exportKey: b(r.exportKey), serverPublicKey: b(r.serverStaticPublicKey) };
}

export function clientStartLogin(password: string): { state: string; ke1: Uint8Array } {
  const r = opaque.client.startLogin({ password });
  return { state: r.clientLoginState, ke1: b(r.startLoginRequest) };
}

/** Returns null when the password is wrong (the envelope does not open). */
export function clientFinishLogin(password: string, state: string, ke2: Uint8Array, ids: Identities, stretching: KeyStretching): { ke3: Uint8Array; sessionKey: Uint8Array; exportKey: Uint8Array; serverPublicKey: Uint8Array } | null {
  let r;
  try {
    r = opaque.client.finishLogin({ password, clientLoginState: state, loginResponse: s(ke2), identifiers: ids, keyStretching: ksf(stretching) });
  } catch {
    return null;
  }
  if (!r) return null;
  return { ke3: b(r.finishLoginRequest), sessionKey: b(r.sessionKey), exportKey: b(r.exportKey), serverPublicKey: b(r.serverStaticPublicKey) };
}
