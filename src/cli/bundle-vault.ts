/** The CLI's bundle mode: read the pinned trust and the client state, fetch, verify, open a Vault. */
import { readFileSync } from 'node:fs';
import { fromHex } from '../crypto/bytes.js';
import { consistencyReference, fetchBundle, parseValidatorTrust, vaultFromBundle, type ValidatorTrust } from '../client/bundle.js';
import type { Transport } from '../client/transport.js';
import { Vault, VaultError } from '../client/vault.js';
import { ProtocolError } from '../protocol/errors.js';
import { fileStateStore } from './client-state.js';

export function loadValidatorTrust(path: string): ValidatorTrust {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    throw new VaultError('TrustFailure', `cannot read the validator trust file ${path}`);
  }
  try {
    return parseValidatorTrust(json);
  } catch (e) {
    throw new VaultError('TrustFailure', (e as Error).message);
  }
}

/** The fleet id the front end says it serves: a bundle for another fleet is refused. */
async function claimedFleetId(server: string): Promise<Uint8Array | undefined> {
  try {
    const res = await fetch(`${server.replace(/\/+$/, '')}/v1/fleet`, { signal: AbortSignal.timeout(10_000) });
    const body = (await res.json()) as { fleetId?: unknown };
    return typeof body.fleetId === 'string' && /^[0-9a-f]{64}$/.test(body.fleetId) ? fromHex(body.fleetId) : undefined;
  } catch {
    throw new VaultError('Unavailable', `cannot reach the vault at ${server}`);
  }
}

export async function openBundleVault(server: string, trustPath: string, statePath: string, transport: Transport): Promise<Vault> {
  const trust = loadValidatorTrust(trustPath);
  const store = fileStateStore(statePath);
  const ref = consistencyReference(trust, await store.load());
  const expectedFleetId = await claimedFleetId(server);
  let bundle;
  try {
    bundle = await fetchBundle(server, ref?.size);
  } catch (e) {
    if (e instanceof ProtocolError) throw new VaultError(e.code, e.message);
    throw e;
  }
  const { vault } = await vaultFromBundle({ bundle, trust, store, transport, ...(expectedFleetId ? { expectedFleetId } : {}) });
  return vault;
}
