/**
 * The request channel crypto (DESIGN section 4): both HPKE implementations against the RFC 9180
 * vectors and against @hpke/core, and the request/response round trip between the WebCrypto client
 * and the node:crypto HSM side.
 */
import { readFileSync } from 'node:fs';
import { createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { expand as hkdfExpand } from '@noble/hashes/hkdf.js';
import { sha256 as nobleSha256 } from '@noble/hashes/sha2.js';
import { Aes256Gcm, CipherSuite, DhkemX25519HkdfSha256, HkdfSha256 } from '@hpke/core';
import { concatBytes, fromHex, toHex, utf8 } from '../src/crypto/bytes.js';
import * as web from '../src/crypto/hpke.js';
import * as node from '../src/crypto/hpke-node.js';
import { ProtocolError } from '../src/protocol/errors.js';

interface VectorEncryption {
  aad: string;
  ct: string;
  nonce: string;
  pt: string;
}
interface VectorExport {
  exporter_context: string;
  L: number;
  exported_value: string;
}
interface Vector {
  mode: number;
  kem_id: number;
  kdf_id: number;
  aead_id: number;
  info: string;
  skRm: string;
  skEm: string;
  pkRm: string;
  pkEm: string;
  enc: string;
  shared_secret: string;
  key: string;
  base_nonce: string;
  exporter_secret: string;
  encryptions: VectorEncryption[];
  exports: VectorExport[];
}

// CI checks out shared/ beside the repository, at the same relative place as here.
const VECTORS_PATH = new URL('../../shared/vectors/hpke/rfc9180-x25519-sha256.json', import.meta.url);
const allVectors = JSON.parse(readFileSync(VECTORS_PATH, 'utf8')) as Vector[];
// Base mode with the AEADs these modules can run: AES-128-GCM, AES-256-GCM, export-only.
const baseVectors = allVectors.filter(
  (v) => v.mode === 0 && v.kem_id === 0x20 && v.kdf_id === 1 && [1, 2, 0xffff].includes(v.aead_id),
);

const h = (s: string): Uint8Array => fromHex(s);

function keyPair(): { sk: Uint8Array; pk: Uint8Array } {
  const sk = new Uint8Array(randomBytes(32));
  return { sk, pk: node.x25519PublicKey(sk) };
}

function flipBit(b: Uint8Array, bit: number): Uint8Array {
  const out = Uint8Array.from(b);
  out[bit >> 3] = out[bit >> 3]! ^ (1 << (bit & 7));
  return out;
}

function expectMalformed(f: () => unknown): void {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ProtocolError);
    expect((e as ProtocolError).code).toBe('Malformed');
    return;
  }
  expect.fail('expected ProtocolError(Malformed)');
}

async function expectMalformedAsync(p: Promise<unknown>): Promise<void> {
  await expect(p).rejects.toBeInstanceOf(ProtocolError);
  await expect(p).rejects.toMatchObject({ code: 'Malformed' });
}

const suite = new CipherSuite({ kem: new DhkemX25519HkdfSha256(), kdf: new HkdfSha256(), aead: new Aes256Gcm() });

describe('RFC 9180 vectors', () => {
  it('covers the base-mode entries of DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256', () => {
    expect(baseVectors.map((v) => v.aead_id).sort((a, b) => a - b)).toEqual([1, 2, 0xffff]);
  });

  for (const v of baseVectors) {
    const aead = v.aead_id as web.AeadId;
    const name = `aead 0x${v.aead_id.toString(16)}`;

    it(`${name}: node KEM, key schedule, all encryptions both ways, all exports`, () => {
      expect(toHex(node.x25519PublicKey(h(v.skRm)))).toBe(v.pkRm);
      expect(toHex(node.x25519PublicKey(h(v.skEm)))).toBe(v.pkEm);
      const encapped = node.encapSync(h(v.pkRm), h(v.skEm));
      expect(toHex(encapped.enc)).toBe(v.enc);
      expect(toHex(encapped.sharedSecret)).toBe(v.shared_secret);
      expect(toHex(node.decapSync(h(v.enc), h(v.skRm)))).toBe(v.shared_secret);
      const ks = node.keyScheduleSync(h(v.shared_secret), h(v.info), aead);
      expect([toHex(ks.key), toHex(ks.baseNonce), toHex(ks.exporterSecret)]).toEqual([v.key, v.base_nonce, v.exporter_secret]);

      const sender = node.setupBaseSenderSync(h(v.pkRm), h(v.info), h(v.skEm), { aead });
      const receiver = node.setupBaseReceiver(h(v.skRm), h(v.enc), h(v.info), { aead });
      expect(toHex(sender.enc)).toBe(v.enc);
      v.encryptions.forEach((e, seq) => {
        expect(toHex(web.computeNonce(h(v.base_nonce), seq))).toBe(e.nonce);
        expect(toHex(sender.seal(h(e.aad), h(e.pt)))).toBe(e.ct);
        expect(toHex(receiver.open(h(e.aad), h(e.ct)))).toBe(e.pt);
      });
      for (const x of v.exports) {
        expect(toHex(sender.export(h(x.exporter_context), x.L))).toBe(x.exported_value);
        expect(toHex(receiver.export(h(x.exporter_context), x.L))).toBe(x.exported_value);
      }
      if (aead === 0xffff) {
        expect(() => sender.seal(new Uint8Array(0), new Uint8Array(0))).toThrow(TypeError);
      }
    });

    it(`${name}: WebCrypto KEM, key schedule, all encryptions both ways, all exports`, async () => {
      const encapped = await web.encap(h(v.pkRm), h(v.skEm));
      expect(toHex(encapped.enc)).toBe(v.enc);
      expect(toHex(encapped.sharedSecret)).toBe(v.shared_secret);
      expect(toHex(await web.decap(h(v.enc), h(v.skRm)))).toBe(v.shared_secret);
      const ks = await web.keySchedule(h(v.shared_secret), h(v.info), aead);
      expect([toHex(ks.key), toHex(ks.baseNonce), toHex(ks.exporterSecret)]).toEqual([v.key, v.base_nonce, v.exporter_secret]);

      const sender = await web.setupBaseSender(h(v.pkRm), h(v.info), { skE: h(v.skEm), aead });
      const receiver = await web.setupBaseReceiver(h(v.skRm), h(v.enc), h(v.info), { aead });
      expect(toHex(sender.enc)).toBe(v.enc);
      for (const e of v.encryptions) {
        expect(toHex(await sender.seal(h(e.aad), h(e.pt)))).toBe(e.ct);
        expect(toHex(await receiver.open(h(e.aad), h(e.ct)))).toBe(e.pt);
      }
      for (const x of v.exports) {
        expect(toHex(await sender.export(h(x.exporter_context), x.L))).toBe(x.exported_value);
        expect(toHex(await receiver.export(h(x.exporter_context), x.L))).toBe(x.exported_value);
      }
      if (aead === 0xffff) {
        await expect(sender.seal(new Uint8Array(0), new Uint8Array(0))).rejects.toThrow(TypeError);
      }
    });
  }

  it('the vectors include the sequence numbers past 255 (carry into the second nonce byte)', () => {
    const v = baseVectors.find((x) => x.aead_id === 2)!;
    expect(v.encryptions.length).toBe(257);
    expect(toHex(web.computeNonce(h(v.base_nonce), 256))).toBe(v.encryptions[256]!.nonce);
  });
});

describe('cross-check with @hpke/core', () => {
  it('@hpke/core seals, ours open (node and WebCrypto), exports agree', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ maxLength: 64 }),
        fc.array(fc.tuple(fc.uint8Array({ maxLength: 200 }), fc.uint8Array({ maxLength: 40 })), { minLength: 1, maxLength: 4 }),
        fc.uint8Array({ maxLength: 40 }),
        async (info, messages, exporterContext) => {
          const { sk, pk } = keyPair();
          const theirs = await suite.createSenderContext({ recipientPublicKey: await suite.kem.deserializePublicKey(pk), info });
          const enc = new Uint8Array(theirs.enc);
          const nodeR = node.setupBaseReceiver(sk, enc, info);
          const webR = await web.setupBaseReceiver(sk, enc, info);
          for (const [pt, aad] of messages) {
            const ct = new Uint8Array(await theirs.seal(pt, aad));
            expect(nodeR.open(aad, ct)).toEqual(pt);
            expect(await webR.open(aad, ct)).toEqual(pt);
          }
          const exported = toHex(new Uint8Array(await theirs.export(exporterContext, 48)));
          expect(toHex(nodeR.export(exporterContext, 48))).toBe(exported);
          expect(toHex(await webR.export(exporterContext, 48))).toBe(exported);
        },
      ),
      { numRuns: 15 },
    );
  });

  it('ours seal (node and WebCrypto), @hpke/core opens, exports agree', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ maxLength: 64 }),
        fc.array(fc.tuple(fc.uint8Array({ maxLength: 200 }), fc.uint8Array({ maxLength: 40 })), { minLength: 1, maxLength: 4 }),
        fc.uint8Array({ maxLength: 40 }),
        async (info, messages, exporterContext) => {
          const { sk, pk } = keyPair();
          const recipientKey = await suite.kem.deserializePrivateKey(sk);
          const webS = await web.setupBaseSender(pk, info);
          const nodeS = node.setupBaseSenderSync(pk, info, new Uint8Array(randomBytes(32)));
          for (const sender of [webS, nodeS]) {
            const theirs = await suite.createRecipientContext({ recipientKey, enc: sender.enc, info });
            for (const [pt, aad] of messages) {
              const ct = await sender.seal(aad, pt);
              expect(new Uint8Array(await theirs.open(ct, aad))).toEqual(pt);
            }
            const exported = toHex(new Uint8Array(await theirs.export(exporterContext, 48)));
            expect(toHex(await sender.export(exporterContext, 48))).toBe(exported);
          }
        },
      ),
      { numRuns: 15 },
    );
  });

  it('long exports agree with @hpke/core up to L = 255 and with @noble/hashes HKDF-Expand up to 255 * Nh', async () => {
    const { sk, pk } = keyPair();
    const theirs = await suite.createSenderContext({ recipientPublicKey: await suite.kem.deserializePublicKey(pk) });
    const enc = new Uint8Array(theirs.enc);
    const ctx = utf8('long');
    const nodeR = node.setupBaseReceiver(sk, enc, new Uint8Array(0));
    const webR = await web.setupBaseReceiver(sk, enc, new Uint8Array(0));
    // @hpke/core 1.9.0 writes I2OSP(L, 2) as [0, L], so above 255 it leaves RFC 9180; a plain
    // HKDF-Expand over the RFC's labeled info is the reference there.
    for (const length of [33, 64, 65, 255]) {
      const expected = toHex(new Uint8Array(await theirs.export(ctx, length)));
      expect(toHex(nodeR.export(ctx, length))).toBe(expected);
      expect(toHex(await webR.export(ctx, length))).toBe(expected);
    }
    const { exporterSecret } = node.keyScheduleSync(node.decapSync(enc, sk), new Uint8Array(0), web.AEAD_AES_256_GCM);
    for (const length of [256, 1000, web.MAX_EXPAND_LENGTH]) {
      const labeled = web.labeledInfo(web.hpkeSuiteId(web.AEAD_AES_256_GCM), 'sec', ctx, length);
      const expected = toHex(hkdfExpand(nobleSha256, exporterSecret, labeled, length));
      expect(toHex(nodeR.export(ctx, length))).toBe(expected);
      expect(toHex(await webR.export(ctx, length))).toBe(expected);
    }
    expect(nodeR.export(ctx, 0)).toEqual(new Uint8Array(0));
    expect(() => nodeR.export(ctx, web.MAX_EXPAND_LENGTH + 1)).toThrow(RangeError);
    await expect(webR.export(ctx, web.MAX_EXPAND_LENGTH + 1)).rejects.toThrow(RangeError);
  });
});

describe('request channel: WebCrypto client <-> node HSM', () => {
  const fleet = keyPair();
  const info = concatBytes(utf8('bkv/v1'), new Uint8Array(32).fill(7));
  const aad = utf8('RecoverStart|1|ab|account-tag');

  it('round-trips a request and its response', async () => {
    const request = utf8('KE1 bytes');
    const sealed = await web.sealRequest(fleet.pk, info, aad, request);
    expect(sealed.enc.length).toBe(32);
    expect(sealed.ciphertext.length).toBe(request.length + 16);
    const opened = node.openRequest(fleet.sk, info, aad, sealed.enc, sealed.ciphertext);
    expect(opened.plaintext).toEqual(request);
    const response = opened.sealResponse(utf8('KE2 bytes'), new Uint8Array(randomBytes(32)));
    expect(response.length).toBe(32 + 9 + 16);
    expect(await sealed.openResponse(response)).toEqual(utf8('KE2 bytes'));
  });

  it('the response follows RFC 9458 section 4.4 (checked with @hpke/core and node hkdf)', async () => {
    const sealed = await web.sealRequest(fleet.pk, info, aad, utf8('status?'));
    const opened = node.openRequest(fleet.sk, info, aad, sealed.enc, sealed.ciphertext);
    const responseNonce = new Uint8Array(randomBytes(32));
    const response = opened.sealResponse(utf8('status: registered'), responseNonce);
    expect(response.subarray(0, 32)).toEqual(responseNonce);
    // An independent derivation: @hpke/core's export, node's one-shot HKDF, node's AES-GCM.
    const theirs = await suite.createRecipientContext({
      recipientKey: await suite.kem.deserializePrivateKey(fleet.sk),
      enc: sealed.enc,
      info,
    });
    expect(new Uint8Array(await theirs.open(sealed.ciphertext, aad))).toEqual(utf8('status?'));
    const secret = new Uint8Array(await theirs.export(utf8('bkv/v1/response'), 32));
    const salt = concatBytes(sealed.enc, responseNonce);
    const key = new Uint8Array(hkdfSync('sha256', secret, salt, 'key', 32));
    const nonce = new Uint8Array(hkdfSync('sha256', secret, salt, 'nonce', 12));
    const d = createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: 16 });
    d.setAuthTag(response.subarray(response.length - 16));
    const pt = Buffer.concat([d.update(response.subarray(32, response.length - 16)), d.final()]);
    expect(new Uint8Array(pt)).toEqual(utf8('status: registered'));
  });

  it('each response nonce gives a different response, and each opens', async () => {
    const sealed = await web.sealRequest(fleet.pk, info, aad, utf8('x'));
    const opened = node.openRequest(fleet.sk, info, aad, sealed.enc, sealed.ciphertext);
    const a = opened.sealResponse(utf8('same'), new Uint8Array(32).fill(1));
    const b = opened.sealResponse(utf8('same'), new Uint8Array(32).fill(2));
    expect(toHex(a)).not.toBe(toHex(b));
    expect(await sealed.openResponse(a)).toEqual(utf8('same'));
    expect(await sealed.openResponse(b)).toEqual(utf8('same'));
  });

  it('a response to another request does not open', async () => {
    const one = await web.sealRequest(fleet.pk, info, aad, utf8('one'));
    const two = await web.sealRequest(fleet.pk, info, aad, utf8('one'));
    const opened = node.openRequest(fleet.sk, info, aad, one.enc, one.ciphertext);
    const response = opened.sealResponse(utf8('for one'), new Uint8Array(randomBytes(32)));
    await expectMalformedAsync(two.openResponse(response));
  });

  it('a flipped bit anywhere in enc, ciphertext, aad or info fails with ProtocolError', async () => {
    const sealed = await web.sealRequest(fleet.pk, info, aad, utf8('a request of some length'));
    const { enc, ciphertext } = sealed;
    for (let bit = 0; bit < enc.length * 8; bit++) {
      expectMalformed(() => node.openRequest(fleet.sk, info, aad, flipBit(enc, bit), ciphertext));
    }
    for (let bit = 0; bit < ciphertext.length * 8; bit++) {
      expectMalformed(() => node.openRequest(fleet.sk, info, aad, enc, flipBit(ciphertext, bit)));
    }
    for (let bit = 0; bit < aad.length * 8; bit++) {
      expectMalformed(() => node.openRequest(fleet.sk, info, flipBit(aad, bit), enc, ciphertext));
    }
    for (let bit = 0; bit < info.length * 8; bit++) {
      expectMalformed(() => node.openRequest(fleet.sk, flipBit(info, bit), aad, enc, ciphertext));
    }
    // Another fleet's key does not open it either.
    expectMalformed(() => node.openRequest(keyPair().sk, info, aad, enc, ciphertext));
    // The untouched request still opens: the failures above were the flips.
    expect(node.openRequest(fleet.sk, info, aad, enc, ciphertext).plaintext).toEqual(utf8('a request of some length'));
  });

  it('a flipped bit anywhere in the response fails with ProtocolError', async () => {
    const sealed = await web.sealRequest(fleet.pk, info, aad, utf8('q'));
    const opened = node.openRequest(fleet.sk, info, aad, sealed.enc, sealed.ciphertext);
    const response = opened.sealResponse(utf8('an answer'), new Uint8Array(randomBytes(32)));
    for (let bit = 0; bit < response.length * 8; bit++) {
      await expectMalformedAsync(sealed.openResponse(flipBit(response, bit)));
    }
    expect(await sealed.openResponse(response)).toEqual(utf8('an answer'));
  });

  it('wrong-length and small-order inputs fail cleanly', async () => {
    const sealed = await web.sealRequest(fleet.pk, info, aad, utf8('q'));
    for (const n of [0, 1, 31, 33, 64]) {
      expectMalformed(() => node.openRequest(fleet.sk, info, aad, new Uint8Array(n), sealed.ciphertext));
    }
    for (let n = 0; n < 17; n++) {
      expectMalformed(() => node.openRequest(fleet.sk, info, aad, sealed.enc, sealed.ciphertext.subarray(0, n)));
    }
    expectMalformed(() => node.openRequest(fleet.sk, info, aad, sealed.enc, concatBytes(sealed.ciphertext, Uint8Array.of(0))));
    // Small-order X25519 points (RFC 7748 section 7): the DH output is all zero and must be refused.
    const smallOrder = [
      new Uint8Array(32),
      concatBytes(Uint8Array.of(1), new Uint8Array(31)),
      h('e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800'),
      h('5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157'),
      h('ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f'),
    ];
    for (const p of smallOrder) {
      expectMalformed(() => node.openRequest(fleet.sk, info, aad, p, sealed.ciphertext));
      expectMalformed(() => node.setupBaseSenderSync(p, info, keyPair().sk));
      await expectMalformedAsync(web.sealRequest(p, info, aad, utf8('q')));
    }
    for (const n of [0, 31, 47]) await expectMalformedAsync(sealed.openResponse(new Uint8Array(n)));
    // The caller's own inputs are programming errors, not malformed requests.
    expect(() => node.openRequest(new Uint8Array(31), info, aad, sealed.enc, sealed.ciphertext)).toThrow(RangeError);
    expect(() => node.x25519PublicKey(new Uint8Array(33))).toThrow(RangeError);
    await expect(web.sealRequest(new Uint8Array(31), info, aad, utf8('q'))).rejects.toThrow(RangeError);
    const opened = node.openRequest(fleet.sk, info, aad, sealed.enc, sealed.ciphertext);
    expect(() => opened.sealResponse(utf8('a'), new Uint8Array(31))).toThrow(RangeError);
  });

  it('error messages carry no key material', async () => {
    const sealed = await web.sealRequest(fleet.pk, info, aad, utf8('q'));
    try {
      node.openRequest(fleet.sk, info, aad, sealed.enc, flipBit(sealed.ciphertext, 0));
      expect.fail('should not open');
    } catch (e) {
      expect((e as Error).message).toBe('request does not decrypt');
    }
    await expect(sealed.openResponse(new Uint8Array(64))).rejects.toThrow(/^response does not decrypt$/);
  });

  it('property: random plaintext and aad round-trip both ways', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ maxLength: 1024 }),
        fc.uint8Array({ maxLength: 80 }),
        fc.uint8Array({ maxLength: 1024 }),
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        async (request, requestAad, answer, responseNonce) => {
          const sealed = await web.sealRequest(fleet.pk, info, requestAad, request);
          const opened = node.openRequest(fleet.sk, info, requestAad, sealed.enc, sealed.ciphertext);
          expect(opened.plaintext).toEqual(request);
          expect(await sealed.openResponse(opened.sealResponse(answer, responseNonce))).toEqual(answer);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('property: random bytes as a request or a response throw only ProtocolError', async () => {
    const sealed = await web.sealRequest(fleet.pk, info, aad, utf8('q'));
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 120 }), async (response) => {
        await expectMalformedAsync(sealed.openResponse(response));
      }),
      { numRuns: 200 },
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), fc.uint8Array({ maxLength: 80 }), (enc, ct) => {
        expectMalformed(() => node.openRequest(fleet.sk, info, aad, enc, ct));
      }),
      { numRuns: 200 },
    );
  });
});

describe('contexts', () => {
  it('sequence numbers: messages open only in order, and a failed open does not advance', () => {
    const { sk, pk } = keyPair();
    const s = node.setupBaseSenderSync(pk, new Uint8Array(0), keyPair().sk);
    const r = node.setupBaseReceiver(sk, s.enc, new Uint8Array(0));
    const empty = new Uint8Array(0);
    const c0 = s.seal(empty, utf8('0'));
    const c1 = s.seal(empty, utf8('1'));
    expectMalformed(() => r.open(empty, c1));
    expect(r.open(empty, c0)).toEqual(utf8('0'));
    expect(r.open(empty, c1)).toEqual(utf8('1'));
    expectMalformed(() => r.open(empty, c1));
  });

  it('concurrent WebCrypto seals take distinct sequence numbers', async () => {
    const { sk, pk } = keyPair();
    const s = await web.setupBaseSender(pk, new Uint8Array(0));
    const empty = new Uint8Array(0);
    const cts = await Promise.all([0, 1, 2, 3].map((i) => s.seal(empty, utf8(String(i)))));
    const r = node.setupBaseReceiver(sk, s.enc, new Uint8Array(0));
    cts.forEach((ct, i) => expect(r.open(empty, ct)).toEqual(utf8(String(i))));
  });

  it('x25519PublicKey agrees with WebCrypto, and the two KEMs agree on shared secrets', async () => {
    const { sk, pk } = keyPair();
    const other = keyPair();
    expect((await web.encap(other.pk, sk)).enc).toEqual(pk);
    const ours = await web.encap(pk);
    expect(node.decapSync(ours.enc, sk)).toEqual(ours.sharedSecret);
    const theirs = node.encapSync(pk, other.sk);
    expect(await web.decap(theirs.enc, sk)).toEqual(theirs.sharedSecret);
  });
});

describe('the SDK channel on Node (node:crypto) and in browsers (WebCrypto) is one format', () => {
  it('a request sealed by either opens at the HSM, and the response opens for its sender', async () => {
    const { sealForFleet } = await import('../src/client/channel.js');
    const { sealRequestSync, openRequest: open, x25519PublicKey: pub } = await import('../src/crypto/hpke-node.js');
    const { sealRequest: webSeal } = await import('../src/crypto/hpke.js');
    const sk = new Uint8Array(32).fill(7);
    const pk = pub(sk);
    const info = new TextEncoder().encode('bkv/v1 test');
    const aad = new TextEncoder().encode('aad');
    for (const seal of [
      (pt: Uint8Array) => sealForFleet(pk, info, aad, pt),
      async (pt: Uint8Array) => webSeal(pk, info, aad, pt),
      async (pt: Uint8Array) => {
        const s = sealRequestSync(pk, info, aad, pt, globalThis.crypto.getRandomValues(new Uint8Array(32)));
        return { ...s, openResponse: async (r: Uint8Array) => s.openResponse(r) };
      },
    ]) {
      const s = await seal(new TextEncoder().encode('hello'));
      const o = open(sk, info, aad, s.enc, s.ciphertext);
      expect(new TextDecoder().decode(o.plaintext)).toBe('hello');
      const resp = o.sealResponse(new TextEncoder().encode('world'), new Uint8Array(32).fill(1));
      expect(new TextDecoder().decode(await s.openResponse(resp))).toBe('world');
      const bad = resp.slice();
      bad[40]! ^= 1;
      await expect(s.openResponse(bad)).rejects.toMatchObject({ code: 'Malformed' });
    }
  });
});
