/**
 * The validator's HTTP interface. The log prefix is the server's root, so that any C2SP
 * verifier can read it (c2sp.org/tlog-tiles):
 *
 *     GET  /checkpoint                       text/plain; charset=utf-8, the latest published checkpoint
 *     GET  /tile/<L>/<N>[.p/<W>]             application/octet-stream, hash tiles
 *     GET  /tile/entries/<N>[.p/<W>]         application/octet-stream, entry bundles (the statements)
 *
 * and beside it, the validator's own API:
 *
 *     POST /validator/v1/submit              {statement, evidence}: the operator's submission
 *     GET  /validator/v1/proof/<index>       tlog-proof of an entry against the latest checkpoint
 *     GET  /validator/v1/evidence/<sha256>   an evidence package, byte for byte
 *     GET  /validator/v1/keys                the verifier keys, log key first
 */
import Fastify, { type FastifyBaseLogger } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { Logger } from 'pino';
import { fromBase64, fromHex } from '../crypto/bytes.js';
import { MAX_EVIDENCE_BYTES } from '../protocol/evidence.js';
import { STRICT_AJV } from '../protocol/schemas.js';
import { MAX_SIGNED_STATEMENT_BYTES } from '../protocol/statement.js';
import { parseTilePath } from '../protocol/tlog/index.js';
import { ValidatorError, httpStatusOfValidatorError, type ValidatorErrorCode } from './errors.js';
import type { Validator } from './validator.js';

export const SubmitSchema = Type.Object(
  {
    statement: Type.String({ maxLength: MAX_SIGNED_STATEMENT_BYTES }),
    evidence: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9+/]*={0,2}$', maxLength: Math.ceil(MAX_EVIDENCE_BYTES / 3) * 4 })),
  },
  { additionalProperties: false },
);

const IMMUTABLE = 'public, max-age=31536000, immutable';

export function buildValidatorServer(validator: Validator, log: Logger) {
  const app = Fastify({ loggerInstance: log as FastifyBaseLogger, bodyLimit: 128 * 1024, disableRequestLogging: true, ajv: STRICT_AJV }).withTypeProvider<TypeBoxTypeProvider>();
  const fail = (code: ValidatorErrorCode, message: string) => ({ error: { code, message } });
  app.setErrorHandler((err: { validation?: unknown; statusCode?: number }, _req, reply) => {
    if (err.validation) return reply.code(400).send(fail('Malformed', 'request does not match the schema'));
    if (err.statusCode === 413) return reply.code(413).send(fail('TooLarge', 'request too large'));
    if (err.statusCode && err.statusCode < 500) return reply.code(400).send(fail('Malformed', 'bad request'));
    return reply.code(500).send(fail('Internal', 'internal error'));
  });

  app.get('/checkpoint', async (_req, reply) => {
    const cp = validator.latest();
    if (!cp) return reply.code(404).type('text/plain; charset=utf-8').send('no checkpoint published yet\n');
    // Mutable: tlog-tiles asks that caching be limited to a few seconds.
    return reply.type('text/plain; charset=utf-8').header('cache-control', 'public, max-age=5').send(cp.note);
  });

  app.get('/tile/*', async (req, reply) => {
    const rest = (req.params as { '*': string })['*'];
    let t;
    try {
      t = parseTilePath(`tile/${rest}`);
    } catch {
      return reply.code(404).type('text/plain; charset=utf-8').send('no such tile\n');
    }
    const bytes = t.kind === 'entries' ? validator.entryBundle(t.index, t.width) : validator.tile(t.level, t.index, t.width);
    // Empty and not-yet-published tiles are not served (tlog-tiles "Partial Tiles").
    if (!bytes) return reply.code(404).type('text/plain; charset=utf-8').send('no such tile\n');
    return reply.type('application/octet-stream').header('cache-control', IMMUTABLE).send(Buffer.from(bytes));
  });

  app.post('/validator/v1/submit', { schema: { body: SubmitSchema } }, async (req, reply) => {
    let evidence: Uint8Array | undefined;
    if (req.body.evidence !== undefined) {
      try {
        evidence = fromBase64(req.body.evidence);
      } catch {
        return reply.code(400).send(fail('Malformed', 'evidence is not base64'));
      }
    }
    try {
      const r = await validator.submit(req.body.statement, evidence);
      return { entry: r.entry, index: r.index, proof: r.proof };
    } catch (e) {
      if (e instanceof ValidatorError) {
        if (e.code === 'Internal') log.error({ err: e.message }, 'submission failed');
        return reply.code(httpStatusOfValidatorError(e.code)).send(fail(e.code, e.message));
      }
      log.error({ err: (e as Error).message }, 'submission failed');
      return reply.code(500).send(fail('Internal', 'internal error'));
    }
  });

  app.get('/validator/v1/proof/:index', async (req, reply) => {
    const index = Number((req.params as { index: string }).index);
    const proof = /^(0|[1-9][0-9]{0,15})$/.test((req.params as { index: string }).index) ? validator.proof(index) : undefined;
    if (!proof) return reply.code(404).send(fail('Malformed', 'no such entry in the published checkpoint'));
    return reply.type('text/plain; charset=utf-8').send(proof);
  });

  app.get('/validator/v1/evidence/:digest', async (req, reply) => {
    const hex = (req.params as { digest: string }).digest;
    const data = /^[0-9a-f]{64}$/.test(hex) ? validator.evidence(fromHex(hex)) : undefined;
    if (!data) return reply.code(404).send(fail('Malformed', 'no such evidence package'));
    return reply.type('application/json').header('cache-control', IMMUTABLE).send(Buffer.from(data));
  });

  app.get('/validator/v1/head', async (_req, reply) => {
    const h = validator.chainHead();
    if (!h) return reply.code(404).send(fail('Malformed', 'the operator has no logged statement yet'));
    return { seq: h.seq, entry: h.entry };
  });

  app.get('/validator/v1/keys', async (_req, reply) => reply.type('text/plain; charset=utf-8').send(validator.verifierKeys().map((k) => `${k}\n`).join('')));

  app.get('/healthz', async () => ({ ok: true, size: validator.latest()?.size ?? null }));
  return app;
}
