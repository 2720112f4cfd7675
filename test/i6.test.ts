/**
 * I6: no untrusted component sees a password, K, the OPAQUE export or session keys, or a user id
 * in clear. Records everything that crosses the front end and the agent over real sockets, their
 * logs, every storage write and the SQLite file, then searches all of it.
 */
import { afterAll, describe, expect, it, vi } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';

const captured: Uint8Array[] = [];
vi.mock('../src/crypto/opaque.js', async (importOriginal) => {
  const m = await importOriginal<typeof import('../src/crypto/opaque.js')>();
  return {
    ...m,
    clientFinishLogin: (...a: Parameters<typeof m.clientFinishLogin>) => {
      const r = m.clientFinishLogin(...a);
      if (r) captured.push(r.exportKey, r.sessionKey);
      return r;
    },
    clientFinishRegistration: (...a: Parameters<typeof m.clientFinishRegistration>) => {
      const r = m.clientFinishRegistration(...a);
      captured.push(r.exportKey);
      return r;
    },
  };
});

const { startSystem } = await import('./helpers/system.js');
const { buildAgentServer } = await import('../src/agent/server.js');
const { buildFrontend } = await import('../src/frontend/server.js');
const { openSessions } = await import('../src/frontend/auth.js');
const { Vault } = await import('../src/client/vault.js');
const { httpTransport } = await import('../src/client/transport.js');
const { toBase64, toHex, utf8, fromBase64 } = await import('../src/crypto/bytes.js');

const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

function collector(): { stream: Writable; text: () => string } {
  const chunks: string[] = [];
  return { stream: new Writable({ write: (c, _e, cb) => (chunks.push(String(c)), cb()) }), text: () => chunks.join('') };
}

describe('I6: what the operator sees', () => {
  it('contains no password, K, export key, session key or user id', async () => {
    const sys = await startSystem();
    cleanups.push(() => sys.close());
    const blobs: Uint8Array[] = [];
    const texts: string[] = [];
    const origAppend = sys.storage.appendEntry.bind(sys.storage);
    sys.storage.appendEntry = async (e, added, removed) => {
      blobs.push(e.entry, ...added.map((a) => a.node), ...removed);
      return origAppend(e, added, removed);
    };
    const agentLog = collector();
    const feLog = collector();
    const agentApp = buildAgentServer(sys.agent, pino({ level: 'trace' }, agentLog.stream));
    const agentUrl = await agentApp.listen({ host: '127.0.0.1', port: 0 });
    cleanups.push(() => agentApp.close());
    const fe = buildFrontend({ agents: [agentUrl], sessions: openSessions, ke1PerTagPerDay: 1000, log: pino({ level: 'trace' }, feLog.stream) });
    const feUrl = await fe.listen({ host: '127.0.0.1', port: 0 });
    cleanups.push(() => fe.close());

    // Every HTTP body in either direction, on both hops (client -> front end -> agent).
    const realFetch = globalThis.fetch;
    globalThis.fetch = async (input, init) => {
      if (typeof init?.body === 'string') texts.push(init.body);
      const res = await realFetch(input, init);
      const body = await res.clone().text();
      texts.push(body);
      return res;
    };
    cleanups.push(async () => {
      globalThis.fetch = realFetch;
    });

    const userId = 'i6-user-zed@example.org';
    const passwords = ['first secret password', 'second secret password', 'a wrong guess'];
    const v = new Vault({ fleet: sys.fleet, transport: httpTransport({ server: feUrl }), keyStretching: 'insecure-fast-for-tests-only' });
    const { key } = await v.register(userId, passwords[0]!);
    expect((await v.recover(userId, passwords[0]!)).key).toEqual(key);
    await expect(v.recover(userId, passwords[2]!)).rejects.toMatchObject({ code: 'WrongPassword' });
    await v.changePassword(userId, passwords[0]!, passwords[1]!);
    expect((await v.recover(userId, passwords[1]!)).key).toEqual(key);
    await v.status(userId);
    await v.delete(userId, passwords[1]!);
    expect(captured.length).toBeGreaterThan(4);
    expect(texts.length).toBeGreaterThan(10);

    sys.storage.checkpoint();
    for (const f of ['vault.sqlite', 'vault.sqlite-wal']) if (existsSync(join(sys.dir, f))) blobs.push(readFileSync(join(sys.dir, f)));
    texts.push(agentLog.text(), feLog.text());
    // Base64 fields in the JSON bodies, decoded: what a proxy would see as bytes.
    for (const t of texts) for (const m of t.matchAll(/"([A-Za-z0-9+/]{16,}={0,2})"/g)) {
      try {
        blobs.push(fromBase64(m[1]!));
      } catch {
        // not base64
      }
    }
    const haystackBytes = Buffer.concat([...blobs.map((b) => Buffer.from(b)), Buffer.from(texts.join('\n'))]);
    const haystackText = texts.join('\n');

    const secrets: [string, Uint8Array][] = [
      ['K', key],
      ['user id', utf8(userId)],
      ...passwords.map((p, i): [string, Uint8Array] => [`password ${i}`, utf8(p)]),
      ...captured.map((c, i): [string, Uint8Array] => [`OPAQUE key ${i}`, c]),
    ];
    for (const [name, s] of secrets) {
      expect(haystackBytes.indexOf(Buffer.from(s)), `${name} in bytes`).toBe(-1);
      expect(haystackText.includes(toHex(s)), `${name} as hex`).toBe(false);
      expect(haystackText.includes(toBase64(s).replace(/=+$/, '')), `${name} as base64`).toBe(false);
      // A 16-byte window catches partial copies of long keys.
      if (s.length >= 32) expect(haystackBytes.indexOf(Buffer.from(s.subarray(8, 24))), `${name} fragment`).toBe(-1);
    }
  });
});
