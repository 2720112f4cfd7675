/**
 * Signer keys on disk (C2SP signer-key text, `PRIVATE+KEY+<name>+<id>+<base64>`), for the
 * validator, witnesses and the operator. A key file is created once, mode 0600, never
 * overwritten; its contents never reach argv, logs or error messages.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { newSignerKey, parseSignerKey, type SignerKey } from '../protocol/tlog/index.js';
import { InputError } from './secrets.js';

/** Reads a signer key file; the error never includes the file's contents. */
export async function readSignerKey(path: string, clock?: () => number): Promise<SignerKey> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8').trim();
  } catch {
    throw new InputError(`cannot read the key file ${path}`);
  }
  try {
    return await parseSignerKey(text, clock ? { clock } : {});
  } catch {
    throw new InputError(`${path} is not a signer key (PRIVATE+KEY+...)`);
  }
}

/** Creates a new signer key file (refusing to overwrite one), and returns its verifier key. */
export async function createSignerKey(path: string, name: string, type = 1): Promise<string> {
  if (existsSync(path)) throw new InputError(`${path} exists already: refusing to overwrite a key`);
  const seed = new Uint8Array(randomBytes(32));
  const { signerKey, verifierKey } = await newSignerKey(name, seed, type);
  seed.fill(0);
  writeFileSync(path, `${signerKey}\n`, { mode: 0o600, flag: 'wx' });
  return verifierKey;
}

/** The key at `path`, created first if missing. */
export async function loadOrCreateSignerKey(path: string, name: string, type = 1, clock?: () => number): Promise<SignerKey> {
  if (!existsSync(path)) await createSignerKey(path, name, type);
  const k = await readSignerKey(path, clock);
  if (k.type !== type) throw new InputError(`${path} holds a key of another signature type`);
  return k;
}
