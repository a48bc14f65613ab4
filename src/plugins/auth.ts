import type { FastifyInstance, FastifyReply, FastifyRequest, onRequestAsyncHookHandler } from 'fastify'
import fp from 'fastify-plugin'
import { authenticate, type ApiKey, type Scope } from '../auth/api-keys.ts'
import { AUDIT_ACTION } from '../audit/hooks.ts'
import { sendError } from '../http/errors.ts'
import { authErrors } from '../schemas/common.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** onRequest hook that admits only a known API key holding `scope` */
    requireScope(scope: Scope): onRequestAsyncHookHandler
  }
  interface FastifyRequest {
    apiKey: ApiKey | null
  }
}

/** Marks the hook requireScope makes, so the document can name the scope a route needs. */
const REQUIRED_SCOPE = Symbol('required scope')

function bearerToken(request: FastifyRequest): string | null {
  const header = request.headers.authorization
  if (typeof header !== 'string') return null
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header)
  return match?.[1] ?? null
}

const tagged = <T>(hooks: unknown, tag: symbol): T | undefined =>
  [hooks].flat().map((h) => (h as Record<symbol, T> | null)?.[tag]).find((v) => v !== undefined)

/**
 * Bearer API keys with scopes: 401 without a known key, 403 without the scope. It runs on
 * onRequest, before validation, so an unauthenticated caller learns nothing about the inputs.
 * Failed authentications are counted per client address: beyond `failuresPerMinute` that
 * address gets 429 instead of 401, while a valid key from it is still admitted (it is never
 * limited by someone else's failures).
 */
export default fp(
  async function authPlugin(app: FastifyInstance, options: { keys: readonly ApiKey[]; failuresPerMinute: number }) {
    app.decorateRequest('apiKey', null)
    // Keyed by client address (IPv6 by /64, the library's default, so one host cannot rotate through its addresses).
    const failures = app.createRateLimit({ max: options.failuresPerMinute, timeWindow: 60_000 })
    app.decorate('requireScope', (scope: Scope) => Object.assign(async (request: FastifyRequest, reply: FastifyReply) => {
      const token = bearerToken(request)
      const key = token === null ? null : authenticate(options.keys, token)
      if (key === null) {
        const counted = await failures(request)
        if (!counted.isAllowed && counted.isExceeded) {
          reply.header('retry-after', counted.ttlInSeconds)
          return sendError(reply, 429, `too many failed authentications from this address; retry in ${counted.ttlInSeconds} s`)
        }
        reply.header('www-authenticate', 'Bearer')
        return sendError(reply, 401, token === null ? 'missing bearer API key' : 'unknown API key')
      }
      request.apiKey = key
      if (!key.scopes.has(scope)) {
        return sendError(reply, 403, `API key ${key.name} lacks the scope ${scope}`)
      }
    }, { [REQUIRED_SCOPE]: scope }))

    // The document says what the hooks enforce, so a client (and the auth-matrix test) reads the
    // scope and the audit action of each operation from it, never from a copy that could drift.
    app.addHook('onRoute', (route) => {
      const scope = tagged<Scope>(route.onRequest, REQUIRED_SCOPE)
      const action = tagged<string>(route.onSend, AUDIT_ACTION)
      if (route.schema === undefined || route.schema.hide === true) return
      const schema = route.schema as Record<string, unknown>
      // Public operations say so (`security: []`); the others name the bearer scheme, and every
      // answer the auth hook and the shared handlers can give, besides their own.
      schema.security = scope === undefined ? [] : [{ bearer: [] }]
      if (scope !== undefined) {
        schema['x-scopes'] = [scope]
        schema.response = { ...authErrors, ...(schema.response as Record<string, unknown> | undefined) }
      }
      if (action !== undefined) schema['x-audit-action'] = action
    })
  },
  { name: 'auth' },
)
