import type { FastifyInstance, FastifyReply, FastifyRequest, onRequestAsyncHookHandler } from 'fastify'
import fp from 'fastify-plugin'
import { authenticate, type ApiKey, type Scope } from '../auth/api-keys.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** onRequest hook that admits only a known API key holding `scope` */
    requireScope(scope: Scope): onRequestAsyncHookHandler
  }
  interface FastifyRequest {
    apiKey: ApiKey | null
  }
}

function bearerToken(request: FastifyRequest): string | null {
  const header = request.headers.authorization
  if (typeof header !== 'string') return null
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header)
  return match?.[1] ?? null
}

/**
 * Bearer API keys with scopes: 401 without a known key, 403 without the scope. It runs on
 * onRequest, before validation, so an unauthenticated caller learns nothing about the inputs.
 */
export default fp(
  async function authPlugin(app: FastifyInstance, options: { keys: readonly ApiKey[] }) {
    app.decorateRequest('apiKey', null)
    app.decorate('requireScope', (scope: Scope) => async (request: FastifyRequest, reply: FastifyReply) => {
      const token = bearerToken(request)
      const key = token === null ? null : authenticate(options.keys, token)
      if (key === null) {
        reply.header('www-authenticate', 'Bearer')
        return reply.code(401).send({ statusCode: 401, error: 'Unauthorized', message: token === null ? 'missing bearer API key' : 'unknown API key' })
      }
      request.apiKey = key
      if (!key.scopes.has(scope)) {
        return reply.code(403).send({ statusCode: 403, error: 'Forbidden', message: `API key ${key.name} lacks the scope ${scope}` })
      }
    })
  },
  { name: 'auth' },
)
