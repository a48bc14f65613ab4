import { AjvCompiler } from '@fastify/ajv-compiler'
import type { FastifyHttpOptions } from 'fastify'
import type { Server } from 'node:http'
import { trustProxy, type Config } from '../config.ts'
import { rewriteUndecodablePath } from './url.ts'

/** Longer than the longest POST /ingest drain (300 s): a socket idle for this long is closed. */
export const IDLE_SOCKET_TIMEOUT_MS = 600_000

/**
 * The Fastify options that bound what a client can make the server hold or accept: time limits
 * on receiving a request, the client address behind a proxy, URL and parameter handling, and
 * validation that coerces query strings (they are text) but never bodies (JSON has types).
 */
export function serverOptions(config: Pick<Config, 'HTTP_REQUEST_TIMEOUT_MS' | 'TRUST_PROXY'>): FastifyHttpOptions<Server> {
  const ajvOptions = { removeAdditional: false, coerceTypes: 'array', useDefaults: true, allErrors: false } as const
  const coercing = AjvCompiler()
  const exact = AjvCompiler()
  return {
    // Headers and body must arrive within the limit; the answer (a long POST /ingest drain) is not bounded by it.
    requestTimeout: config.HTTP_REQUEST_TIMEOUT_MS,
    connectionTimeout: IDLE_SOCKET_TIMEOUT_MS,
    // Node checks the limits on an interval (30 s by default), which would let a 30 s limit hold for 60 s.
    http: { headersTimeout: config.HTTP_REQUEST_TIMEOUT_MS, connectionsCheckingInterval: Math.min(1000, config.HTTP_REQUEST_TIMEOUT_MS) },
    trustProxy: trustProxy(config.TRUST_PROXY),
    rewriteUrl: rewriteUndecodablePath,
    // Longer than any URL Node accepts (16 KiB of headers), so a long path parameter reaches the
    // route (authenticated, audited, 400 from its schema) instead of a 414 from the router.
    routerOptions: { maxParamLength: 16_384 },
    // Refuse unknown query parameters and body fields instead of silently dropping them.
    ajv: { customOptions: ajvOptions },
    schemaController: {
      compilersFactory: {
        buildValidator: (externalSchemas, options) => {
          const text = coercing(externalSchemas, options)
          const json = exact(externalSchemas, { ...options, customOptions: { ...options?.customOptions, coerceTypes: false } } as typeof options)
          return (route) => (route.httpPart === 'body' ? json(route) : text(route))
        },
      },
    },
  }
}
