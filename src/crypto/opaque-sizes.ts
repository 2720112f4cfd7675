/** Sizes of OPAQUE-3DH messages for ristretto255 / SHA-512 (RFC 9807), for edge validation. */
export const OPAQUE_SIZES = {
  registrationRequest: 32,
  registrationResponse: 64,
  registrationRecord: 192,
  ke1: 96,
  ke2: 320,
  ke3: 64,
  serverSetup: 128,
  publicKey: 32,
  sessionKey: 64,
  exportKey: 64,
} as const;
