/**
 * I8 over real sockets: the front end (and the agent behind it) answer every malformed,
 * oversized, mis-sealed or mis-addressed request with a 4xx JSON {error: {code, message}} and the
 * expected code, never a 500; nothing such a request carries reaches the log; and both processes
 * keep serving (a normal registration and recovery still work afterwards).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { request as httpRequest } from 'node:http';
import { toBase64, utf8 } from '../../src/crypto/bytes.js';
import { Writer } from '../../src/protocol/encoding.js';
import { accountTag, routingHint } from '../../src/protocol/ids.js';
import { LABEL, PROTOCOL_VERSION } from '../../src/protocol/labels.js';
import { encodeRequest, MESSAGE_TYPES, messageTypeCode, type VaultRequest } from '../../src/protocol/messages.js';
import { ERROR_CODES, type ErrorCode } from '../../src/protocol/errors.js';
import { httpStatusOf, type EnvelopeJson } from '../../src/protocol/http.js';
import { RawClient, sealCall, startHttpSystem, type HttpReply, type HttpSystem } from '../helpers/http-system.js';
import { bytes, validUserId } from './arbitraries.js';

let h: HttpSystem;
let raw: RawClient;
const VICTIM = 'victim@example.org';
let victimStatus: unknown;

beforeAll(async () => {
  h = await startHttpSystem();
  raw = new RawClient(h);
  await raw.register(VICTIM, 'victim password', 5);
  // One wrong guess, so that a reset or a second count would both show.
  await raw.login(VICTIM, 'wrong');
  victimStatus = await raw.status(VICTIM);
  expect(victimStatus).toMatchObject({ state: 'active', guessesLeft: 4, failuresSinceLastSuccess: 1 });
});

afterAll(async () => {
  await h?.close();
});

/** A clear refusal: the status of its code, a JSON body of exactly {error: {code, message}}. */
function expectError(r: HttpReply, codes: ErrorCode | ErrorCode[]): void {
  const allowed = Array.isArray(codes) ? codes : [codes];
  expect(r.status, r.text).not.toBe(500);
  expect(r.status).toBeGreaterThanOrEqual(400);
  expect(r.contentType ?? '').toMatch(/^application\/json/);
  const body = r.json as { error?: { code?: unknown; message?: unknown } };
  expect(Object.keys(body ?? {})).toEqual(['error']);
  expect(Object.keys(body.error ?? {}).sort()).toEqual(['code', 'message']);
  expect(ERROR_CODES).toContain(body.error!.code);
  expect(allowed, `got ${r.status} ${r.text}`).toContain(body.error!.code);
  expect(typeof body.error!.message).toBe('string');
  expect((body.error!.message as string).length).toBeGreaterThan(0);
  expect(r.status).toBe(httpStatusOf(body.error!.code as ErrorCode));
}

/** Runs `body` and checks that it appended nothing to the log (refused before the HSM applied anything). */
async function noLogChange(body: () => Promise<void>): Promise<void> {
  const before = await h.logIndex();
  await body();
  expect(await h.logIndex()).toBe(before);
}

async function validEnvelope(req?: VaultRequest): Promise<EnvelopeJson> {
  return (await sealCall(h.fleet, req ?? { type: 'Status', userId: VICTIM, nonce: new Uint8Array(8) })).json;
}

const AGENT = () => `${h.agentUrl}/agent/v1/request`;
const ENDPOINTS = ['front end', 'agent'] as const;
const urlOf = (e: (typeof ENDPOINTS)[number]) => (e === 'agent' ? AGENT() : undefined);

describe('I8 over HTTP: bodies that are not an envelope', () => {
  for (const endpoint of ENDPOINTS) {
    it(`${endpoint}: non-JSON bodies are Malformed (400)`, async () => {
      await noLogChange(async () => {
        const notJson = fc.oneof(
          fc.string({ maxLength: 200 }),
          fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b).toString('latin1')),
          fc.constantFrom('', '{', '{"v":1,', 'null', '[]', '"str"', '1', 'true', '{"v":1}}', '\uFEFF{}', '{"__proto__":{"polluted":1}}', '{"constructor":{"prototype":{"x":1}}}'),
        );
        await fc.assert(
          fc.asyncProperty(notJson, async (s) => {
            const r = await h.post(s, { url: urlOf(endpoint) });
            expectError(r, 'Malformed');
          }),
          { numRuns: 60 },
        );
      });
    });

    it(`${endpoint}: wrong or missing content types are Malformed (400), even for a valid envelope`, async () => {
      const env = JSON.stringify(await validEnvelope());
      await noLogChange(async () => {
        for (const ct of [null, 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/octet-stream', 'application/xml', 'application/jsonx', 'text/json', 'image/png']) {
          const r = await h.post(env, { contentType: ct, url: urlOf(endpoint) });
          expectError(r, 'Malformed');
        }
      });
    });
  }

  it('JSON that does not match the schema (missing, extra, mistyped fields) is Malformed (400)', async () => {
    const env = await validEnvelope();
    const fields = Object.keys(env) as (keyof EnvelopeJson)[];
    const mutated = fc.oneof(
      // a missing field
      fc.constantFrom(...fields).map((f) => {
        const o: Record<string, unknown> = { ...env };
        delete o[f];
        return o;
      }),
      // an extra field
      fc.tuple(fc.string({ minLength: 1, maxLength: 10 }).filter((k) => !(fields as string[]).includes(k) && k !== '__proto__'), fc.jsonValue()).map(([k, v]) => ({ ...env, [k]: v })),
      // a field of another JSON type (strings that are valid values are covered elsewhere)
      fc.tuple(fc.constantFrom(...fields), fc.oneof(fc.constant(null), fc.boolean(), fc.double(), fc.array(fc.jsonValue(), { maxLength: 3 }), fc.dictionary(fc.string({ maxLength: 5 }), fc.jsonValue(), { maxKeys: 3 }))).map(([f, v]) => ({ ...env, [f]: v })),
      // coercible look-alikes: "1" for 1, true for 1, ["Status"] for "Status"
      fc.constantFrom({ ...env, v: String(env.v) }, { ...env, v: true }, { ...env, v: 1.5 }, { ...env, v: -1 }, { ...env, v: 65536 }, { ...env, type: [env.type] }, { ...env, ct: [env.ct] }),
    );
    await noLogChange(async () => {
      await fc.assert(
        fc.asyncProperty(mutated, fc.constantFrom(...ENDPOINTS), async (body, endpoint) => {
          expectError(await h.post(JSON.stringify(body), { url: urlOf(endpoint) }), 'Malformed');
        }),
        { numRuns: 200 },
      );
    });
  });

  it('unknown message types are refused (400), at the edge and inside the sealed request', async () => {
    await noLogChange(async () => {
      const env = await validEnvelope();
      await fc.assert(
        fc.asyncProperty(fc.string({ maxLength: 30 }).filter((t) => !(MESSAGE_TYPES as readonly string[]).includes(t)), async (t) => {
          expectError(await h.post(JSON.stringify({ ...env, type: t })), 'Malformed');
        }),
        { numRuns: 50 },
      );
      // Inside a properly sealed envelope: the inner type code is unknown.
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 0, max: 255 }).filter((c) => c < 1 || c > MESSAGE_TYPES.length), async (code) => {
          const plaintext = new Writer().label(LABEL.request).u16(PROTOCOL_VERSION).u8(code).string(VICTIM).bytes(new Uint8Array(8)).finish();
          const c = await sealCall(h.fleet, { type: 'Status', userId: VICTIM, nonce: new Uint8Array(8) }, { plaintext });
          expectError(await h.post(JSON.stringify(c.json)), 'UnknownMessageType');
        }),
        { numRuns: 30 },
      );
      // The envelope names one type, the sealed request is another.
      for (const t of MESSAGE_TYPES.filter((x) => x !== 'Status')) {
        const c = await sealCall(h.fleet, { type: 'Status', userId: VICTIM, nonce: new Uint8Array(8) }, { type: t });
        expectError(await h.post(JSON.stringify(c.json)), 'Malformed');
      }
    });
  });

  it('unsupported protocol versions are UnsupportedVersion (400), in the envelope and in the sealed request', async () => {
    await noLogChange(async () => {
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 0, max: 0xffff }).filter((v) => v !== PROTOCOL_VERSION), fc.boolean(), async (v, inner) => {
          const req: VaultRequest = { type: 'RecoverStart', userId: VICTIM, ke1: new Uint8Array(96).fill(3) };
          let c;
          if (inner) {
            // A well-formed v1 envelope whose sealed request says another version.
            const plaintext = encodeRequest(req);
            const off = new Writer().label(LABEL.request).finish().length;
            plaintext[off] = v >> 8;
            plaintext[off + 1] = v & 0xff;
            c = await sealCall(h.fleet, req, { plaintext });
          } else {
            // Sealed like Vault.call does, with the other version in the envelope and its AAD.
            c = await sealCall(h.fleet, req, { version: v });
          }
          expectError(await h.post(JSON.stringify(c.json)), 'UnsupportedVersion');
        }),
        { numRuns: 60 },
      );
    });
  });
});

describe('I8 over HTTP: size limits', () => {
  it('bodies over 16 KiB are TooLarge (413) at both endpoints', async () => {
    const env = await validEnvelope();
    await noLogChange(async () => {
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 16 * 1024 + 1, max: 256 * 1024 }), fc.constantFrom(...ENDPOINTS), fc.boolean(), async (n, endpoint, json) => {
          const body = json ? JSON.stringify({ ...env, ct: 'A'.repeat(n) }) : 'x'.repeat(n);
          expectError(await h.post(body, { url: urlOf(endpoint) }), 'TooLarge');
        }),
        { numRuns: 40 },
      );
    });
  });

  it('a chunked body over 16 KiB (no Content-Length) is TooLarge (413)', async () => {
    await noLogChange(async () => {
      for (const base of [h.frontUrl, h.agentUrl]) {
        const url = new URL(base === h.frontUrl ? '/v1/request' : '/agent/v1/request', base);
        const r = await new Promise<HttpReply>((resolve, reject) => {
          const req = httpRequest(url, { method: 'POST', headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' } }, (res) => {
            let text = '';
            res.setEncoding('utf8');
            res.on('data', (d: string) => (text += d));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, text, json: JSON.parse(text) as unknown, contentType: res.headers['content-type'] ?? null }));
          });
          req.on('error', reject);
          req.write('{"ct":"');
          for (let i = 0; i < 40; i++) req.write('A'.repeat(1024));
          req.end('"}');
        });
        expectError(r, 'TooLarge');
      }
    });
  });

  it('fields within the body limit but over their schema length are Malformed (400)', async () => {
    const env = await validEnvelope();
    await noLogChange(async () => {
      for (const [f, n] of [['ct', 8196], ['tag', 48], ['enc', 48], ['hint', 8]] as const) {
        expectError(await h.post(JSON.stringify({ ...env, [f]: 'A'.repeat(n) })), 'Malformed');
      }
    });
  });

  it('a sealed request whose plaintext is over the limit is TooLarge (413)', async () => {
    await noLogChange(async () => {
      const c = await sealCall(h.fleet, { type: 'Status', userId: VICTIM, nonce: new Uint8Array(8) }, { plaintext: new Uint8Array(4097) });
      expectError(await h.post(JSON.stringify(c.json)), 'TooLarge');
    });
  });
});

describe('I8 over HTTP: base64 fields', () => {
  it('hint, tag and enc of the wrong length, and non-canonical base64, are Malformed (400)', async () => {
    const env = await validEnvelope();
    await noLogChange(async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.constantFrom(['hint', 2], ['tag', 32], ['enc', 32]) as fc.Arbitrary<['hint' | 'tag' | 'enc', number]>,
          fc.integer({ min: 0, max: 33 }),
          fc.constantFrom(...ENDPOINTS),
          async ([f, want], len, endpoint) => {
            fc.pre(len !== want);
            const value = toBase64(new Uint8Array(len).fill(0x41));
            expectError(await h.post(JSON.stringify({ ...env, [f]: value }), { url: urlOf(endpoint) }), 'Malformed');
          },
        ),
        { numRuns: 60 },
      );
      for (const [f, bad] of [['tag', env.tag.slice(0, -1)], ['enc', env.enc.replace(/=$/, '')], ['hint', 'AAB='], ['ct', env.ct + '='], ['ct', 'A'], ['tag', env.tag.slice(0, -2) + 'B=']] as const) {
        expectError(await h.post(JSON.stringify({ ...env, [f]: bad })), 'Malformed');
      }
    });
  });
});

describe('I8 over HTTP: tampered sealed envelopes', () => {
  it('a bit flipped in ct, enc, tag, hint or type of a sealed KE1 is Malformed (400) and spends no guess', async () => {
    const c = await sealCall(h.fleet, { type: 'RecoverStart', userId: VICTIM, ke1: new Uint8Array(96).fill(5) });
    await noLogChange(async () => {
      await fc.assert(
        fc.asyncProperty(fc.constantFrom('ct', 'enc', 'tag', 'hint') as fc.Arbitrary<'ct' | 'enc' | 'tag' | 'hint'>, fc.nat(), fc.integer({ min: 0, max: 7 }), async (f, pos, bit) => {
          const field = f === 'ct' ? c.env.ciphertext : c.env[f];
          const b = field.slice();
          const i = pos % b.length;
          b[i] = b[i]! ^ (1 << bit);
          expectError(await h.post(JSON.stringify({ ...c.json, [f]: toBase64(b) })), 'Malformed');
        }),
        { numRuns: 100 },
      );
      for (const t of MESSAGE_TYPES.filter((x) => x !== 'RecoverStart')) expectError(await h.post(JSON.stringify({ ...c.json, type: t })), 'Malformed');
      // Truncated and extended ciphertexts.
      expectError(await h.post(JSON.stringify({ ...c.json, ct: toBase64(c.env.ciphertext.subarray(0, c.env.ciphertext.length - 1)) })), 'Malformed');
      expectError(await h.post(JSON.stringify({ ...c.json, ct: toBase64(new Uint8Array([...c.env.ciphertext, 0])) })), 'Malformed');
      expectError(await h.post(JSON.stringify({ ...c.json, ct: '' })), 'Malformed');
      // A small-order point as enc.
      expectError(await h.post(JSON.stringify({ ...c.json, enc: toBase64(new Uint8Array(32)) })), 'Malformed');
    });
    expect(await raw.status(VICTIM)).toEqual(victimStatus);
  });

  it('a sealed request whose user id does not match its hint or tag is AccountMismatch (403)', async () => {
    await noLogChange(async () => {
      await fc.assert(
        fc.asyncProperty(validUserId, fc.constantFrom('both', 'hint', 'tag'), async (other, which) => {
          fc.pre(other !== VICTIM);
          // The sealed request is for `other`; the envelope claims the victim's hint and/or tag, or
          // the other way round (a KE1 for the victim filed under someone else's account).
          const forVictim: VaultRequest = { type: 'RecoverStart', userId: VICTIM, ke1: new Uint8Array(96).fill(5) };
          const hint = which !== 'tag' ? routingHint(other) : undefined;
          const tag = which !== 'hint' ? accountTag(other) : undefined;
          fc.pre(!(which === 'hint' && hint![0] === routingHint(VICTIM)[0] && hint![1] === routingHint(VICTIM)[1]));
          const c = await sealCall(h.fleet, forVictim, { hint, tag });
          expectError(await h.post(JSON.stringify(c.json)), 'AccountMismatch');
        }),
        { numRuns: 60 },
      );
    });
    expect(await raw.status(VICTIM)).toEqual(victimStatus);
  });

  it('a sealed request for a user id the vault refuses (empty, or over 256 bytes) is refused at once, and does not stall its batch', async () => {
    const poisoned = async (userId: string) => {
      const plaintext = new Writer().label(LABEL.request).u16(PROTOCOL_VERSION).u8(messageTypeCode('Status')).string(userId).bytes(new Uint8Array(8)).finish();
      return (await sealCall(h.fleet, { type: 'Status', userId: VICTIM, nonce: new Uint8Array(8) }, { plaintext })).json;
    };
    await noLogChange(async () => {
      expectError(await h.post(JSON.stringify(await poisoned(''))), 'BadRequest');
      expectError(await h.post(JSON.stringify(await poisoned('x'.repeat(257)))), 'Malformed');
    });
    // Sent together with good requests, so that they share the agent's batch: all get answers.
    const bad = JSON.stringify(await poisoned(''));
    const t0 = Date.now();
    const [b1, s1, b2, s2] = await Promise.all([h.post(bad), raw.call({ type: 'Status', userId: VICTIM, nonce: new Uint8Array(4) }), h.post(bad), raw.call({ type: 'Status', userId: 'someone', nonce: new Uint8Array(4) })]);
    expectError(b1, 'BadRequest');
    expectError(b2, 'BadRequest');
    expect(s1.res).toMatchObject({ type: 'Status', outcome: 'Ok', state: 'active' });
    expect(s2.res).toMatchObject({ type: 'Status', outcome: 'Ok', state: 'none' });
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  it('random bytes as enc and ct, under valid hint and tag, are Malformed (400)', async () => {
    await noLogChange(async () => {
      await fc.assert(
        fc.asyncProperty(bytes(32), fc.uint8Array({ maxLength: 600 }), fc.constantFrom(...MESSAGE_TYPES), async (enc, ct, type) => {
          const body = { v: 1, type, hint: toBase64(routingHint(VICTIM)), tag: toBase64(accountTag(VICTIM)), enc: toBase64(enc), ct: toBase64(ct) };
          expectError(await h.post(JSON.stringify(body)), 'Malformed');
        }),
        { numRuns: 100 },
      );
    });
  });
});

describe('I8 over HTTP: the processes keep serving', () => {
  it('after all of the above: health, fleet, metrics and OpenAPI answer; the victim is unchanged; register and recover work', async () => {
    expect((await h.get('/healthz')).status).toBe(200);
    expect((await h.get('/healthz', h.agentUrl)).status).toBe(200);
    const fleet = await h.get('/v1/fleet');
    expect(fleet.status).toBe(200);
    expect((fleet.json as { fleetId: string }).fleetId).toBe(Buffer.from(h.fleet.fleetId).toString('hex'));
    const metrics = await h.get('/metrics');
    expect(metrics.status).toBe(200);
    expect(metrics.text).toMatch(/bkv_frontend_requests_total\{type="RecoverStart",outcome="Malformed"\} \d+/);
    expect((await h.get('/openapi.json')).status).toBe(200);
    expect(await raw.status(VICTIM)).toEqual(victimStatus);

    const v = h.vault();
    const { key } = await v.register('after-the-storm', 'pw');
    expect((await v.recover('after-the-storm', 'pw')).key).toEqual(key);
    // The victim can still log in: nothing above spent a guess or reset the failure count.
    const r = await v.recover(VICTIM, 'victim password').catch((e: unknown) => e);
    expect(r).not.toBeInstanceOf(Error);
  });

  it('a user id that starts with U+FEFF round-trips through the whole system', async () => {
    const v = h.vault();
    const id = '\uFEFFbom-user';
    const { key } = await v.register(id, 'pw');
    expect((await v.recover(id, 'pw')).key).toEqual(key);
    expect(utf8(id)[0]).toBe(0xef);
  });
});

describe('I8 over HTTP: a fleet that serves part of the route space', () => {
  let hh: HttpSystem;
  beforeAll(async () => {
    hh = await startHttpSystem({ routes: [{ from: 0, to: 0x7fff }] });
  });
  afterAll(async () => {
    await hh?.close();
  });

  it('a request for a user id routed elsewhere is OutOfRange (421) before decryption, and logs nothing', async () => {
    let seen = 0;
    await fc.assert(
      fc.asyncProperty(validUserId, async (u) => {
        const outside = routingHint(u)[0]! >= 0x80;
        const c = await sealCall(hh.fleet, { type: 'RecoverStart', userId: u, ke1: new Uint8Array(96).fill(1) });
        const before = await hh.logIndex();
        const r = await hh.post(JSON.stringify(c.json));
        if (outside) {
          seen++;
          expectError(r, 'OutOfRange');
          expect(await hh.logIndex()).toBe(before);
        } else {
          // Served here: a sealed NotRegistered (it is applied, so only compare outside ones).
          expect(r.status, r.text).toBe(200);
        }
      }),
      { numRuns: 40 },
    );
    expect(seen).toBeGreaterThan(0);
    // A tampered hint that moves a served user out of range is refused the same way.
    const before = await hh.logIndex();
    const c = await sealCall(hh.fleet, { type: 'Status', userId: 'x', nonce: new Uint8Array(4) }, { hint: Uint8Array.of(0xff, 0xff) });
    expectError(await hh.post(JSON.stringify(c.json)), 'OutOfRange');
    expect(await hh.logIndex()).toBe(before);
  });
});
