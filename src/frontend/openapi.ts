/** The OpenAPI document of the front end, served at /openapi.json. */
import { EnvelopeSchema, ErrorSchema, ReplySchema } from '../protocol/schemas.js';

export function openApiDocument(): Record<string, unknown> {
  const errors = Object.fromEntries(
    [
      ['400', 'Malformed, BadRequest, UnknownMessageType or UnsupportedVersion'],
      ['401', 'Unauthorized: no valid app session'],
      ['403', 'AccountMismatch: the account tag is not the session user\'s'],
      ['413', 'TooLarge'],
      ['421', 'OutOfRange: the user is served by another fleet'],
      ['429', 'RateLimited: too many recoveries for this account today'],
      ['503', 'Unavailable, NotLeader or Halted'],
      ['504', 'OutcomeUnknown: a guess may have been spent'],
    ].map(([status, description]) => [status, { description, content: { 'application/json': { schema: ErrorSchema } } }]),
  );
  return {
    openapi: '3.1.0',
    info: { title: 'Backup Key Vault front end', version: '1' },
    paths: {
      '/v1/request': {
        post: {
          summary: 'Relay one HPKE-sealed vault request to the fleet',
          description: 'The body is an envelope: message type, protocol version, routing hint and account tag in clear, the rest HPKE ciphertext to the fleet key. The answer is sealed to the request (RFC 9458 style). The front end sees no user data.',
          security: [{ session: [] }],
          requestBody: { required: true, content: { 'application/json': { schema: EnvelopeSchema } } },
          responses: { '200': { description: 'sealed response', content: { 'application/json': { schema: ReplySchema } } }, ...errors },
        },
      },
      '/v1/fleet': { get: { summary: 'The fleet\'s public keys (for diagnostics; clients verify against their own pins)', responses: { '200': { description: 'trust file form' } } } },
      '/healthz': { get: { summary: 'Liveness and whether the fleet answers', responses: { '200': { description: 'ok' }, '503': { description: 'fleet unavailable' } } } },
      '/metrics': { get: { summary: 'Prometheus metrics', responses: { '200': { description: 'text exposition format' } } } },
    },
    components: { securitySchemes: { session: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } } },
  };
}
