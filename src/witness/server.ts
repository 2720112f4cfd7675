/**
 * The witness's HTTP interface (c2sp.org/tlog-witness): `POST <prefix>/add-checkpoint`, with the
 * status codes of the spec, and the 409 body in `text/x.tlog.size`.
 */
import Fastify, { type FastifyBaseLogger } from 'fastify';
import type { Logger } from 'pino';
import { MAX_ADD_CHECKPOINT_BYTES, type Witness } from './witness.js';

export function buildWitnessServer(witness: Witness, log: Logger) {
  const app = Fastify({ loggerInstance: log as FastifyBaseLogger, bodyLimit: MAX_ADD_CHECKPOINT_BYTES, disableRequestLogging: true });
  // The body is text in the spec's line format, whatever content type a client sends.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  app.setErrorHandler((err: { statusCode?: number }, _req, reply) => {
    if (err.statusCode === 413) return reply.code(413).type('text/plain; charset=utf-8').send('request too large\n');
    if (err.statusCode && err.statusCode < 500) return reply.code(400).type('text/plain; charset=utf-8').send('bad request\n');
    return reply.code(500).type('text/plain; charset=utf-8').send('internal error\n');
  });

  app.post('/add-checkpoint', async (req, reply) => {
    const body = req.body instanceof Buffer ? new Uint8Array(req.body) : new Uint8Array(0);
    const r = await witness.addCheckpoint(body);
    const text = (code: number, msg: string) => reply.code(code).type('text/plain; charset=utf-8').send(`${msg}\n`);
    switch (r.type) {
      case 'Cosigned':
        return reply.code(200).type('text/plain; charset=utf-8').send(r.body);
      case 'BadRequest':
        return text(400, r.message);
      case 'Forbidden':
        return text(403, r.message);
      case 'UnknownLog':
        return text(404, 'unknown log origin');
      case 'Conflict':
        return reply.code(409).type('text/x.tlog.size').send(`${r.latestSize}\n`);
      case 'InvalidProof':
        return text(422, r.message);
    }
  });

  app.get('/healthz', async () => ({ ok: true, witness: witness.verifierKey }));
  return app;
}
