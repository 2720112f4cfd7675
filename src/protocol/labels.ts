/** Protocol version and the domain-separation labels of DESIGN section 4. */

export const PROTOCOL_VERSION = 1;

/** HKDF labels of the fleet-key subkeys: one per use (DESIGN section 4, "Domain separation"). */
export const SUBKEY = {
  recordId: 'bkv/v1/record-id',
  logEntry: 'bkv/v1/log-entry',
  capture: 'bkv/v1/capture',
  loginState: 'bkv/v1/login-state',
  // Not in DESIGN's list: registration states get their own subkey rather than sharing
  // login-state's, so that one sealed state can never be read as the other (docs/decisions.md).
  registerState: 'bkv/v1/register-state',
  session: 'bkv/v1/session',
  sessionOp: 'bkv/v1/session-op',
  response: 'bkv/v1/response',
  recordEpoch: (n: number): string => `bkv/v1/record-epoch/${n}`,
} as const;

/** Labels of the structures and derivations shared by client and HSM. */
export const LABEL = {
  channelInfo: 'bkv/v1',
  requestAad: 'bkv/v1/request-aad',
  responseExport: 'bkv/v1/response',
  route: 'bkv/v1/route',
  account: 'bkv/v1/account',
  credential: 'bkv/v1/cred',
  wrap: 'bkv/v1/wrap',
  wrapAd: 'bkv/v1/wrap-ad',
  fleetKeys: 'bkv/v1/fleet-keys',
  transport: 'bkv/v1/w-transport',
  sessionOpMac: 'bkv/v1/session-op-mac',
  request: 'bkv/v1/request',
  reply: 'bkv/v1/reply',
} as const;
