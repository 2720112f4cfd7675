/** The agent's HTTP endpoint: the front end forwards sealed envelopes here. */
import Fastify, { type FastifyBaseLogger } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Logger } from 'pino';
import { toBase64, toHex } from '../crypto/bytes.js';
import { ProtocolError } from '../protocol/errors.js';
import { envelopeFromJson, httpStatusOf } from '../protocol/http.js';
import { makeTrustFile } from '../protocol/fleet.js';
import { EnvelopeSchema, STRICT_AJV } from '../protocol/schemas.js';
import type { Agent } from './agent.js';

export function buildAgentServer(agent: Agent, log: Logger) {
  const app = Fastify({ loggerInstance: log as FastifyBaseLogger, bodyLimit: 16 * 1024, disableRequestLogging: true, ajv: STRICT_AJV }).withTypeProvider<TypeBoxTypeProvider>();
  app.setErrorHandler((err: { validation?: unknown; statusCode?: number }, _req, reply) => {
    if (err.validation) return reply.code(400).send({ error: { code: 'Malformed', message: 'request does not match the schema' } });
    if (err.statusCode === 413) return reply.code(413).send({ error: { code: 'TooLarge', message: 'request too large' } });
    // Bad JSON, a wrong content type and the like are the caller's error, never an internal one (I8).
    if (err.statusCode === 415) return reply.code(400).send({ error: { code: 'Malformed', message: 'expected application/json' } });
    if (err.statusCode && err.statusCode < 500) return reply.code(400).send({ error: { code: 'Malformed', message: 'bad request' } });
    return reply.code(500).send({ error: { code: 'Internal', message: 'internal error' } });
  });

  app.post('/agent/v1/request', { schema: { body: EnvelopeSchema } }, async (req, reply) => {
    let env;
    try {
      env = envelopeFromJson(req.body);
    } catch (e) {
      const code = e instanceof ProtocolError ? e.code : 'Malformed';
      return reply.code(httpStatusOf(code)).send({ error: { code, message: (e as Error).message } });
    }
    const r = await agent.submit(env);
    if (r.type === 'Sealed') return { ct: toBase64(r.body) };
    return reply.code(httpStatusOf(r.code)).send({ error: { code: r.code, message: r.message } });
  });

  app.get('/agent/v1/fleet', async () => makeTrustFile(agent.publicKeys(), agent.fleetConfig().routes));

  app.get('/agent/v1/status', async () => {
    const s = agent.hsm.status();
    const pos = (p?: { index: number; hash: Uint8Array }) => (p ? { index: p.index, hash: toHex(p.hash) } : null);
    return { member: toHex(s.memberId), fleetId: s.fleetId ? toHex(s.fleetId) : null, leader: s.leader, captured: pos(s.captured), persisted: pos(s.persisted), committed: pos(s.committed), halted: s.halted ?? null, stats: agent.stats };
  });

  app.get('/healthz', async (_req, reply) => {
    const s = agent.hsm.status();
    if (s.halted) return reply.code(503).send({ ok: false, reason: 'halted' });
    return { ok: true, leader: s.leader };
  });
  return app;
}
