import rateLimit from '@fastify/rate-limit'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Fastify, { LogController, type FastifyError, type FastifyInstance, type FastifyServerOptions, type onRequestAsyncHookHandler, type preHandlerAsyncHookHandler } from 'fastify'
import audit from '../routes/audit.ts'
import healthz from '../routes/healthz.ts'
import ingest from '../routes/ingest.ts'
import piiRoute from '../routes/logins/_id/pii.ts'
import duplicates from '../routes/logins/duplicates.ts'
import logins from '../routes/logins/index.ts'
import readyz from '../routes/readyz.ts'
import rejected from '../routes/rejected/index.ts'
import resubmit from '../routes/rejected/resubmit.ts'
import erase from '../routes/users/_user_id/pii.ts'
import { RefusalAudit } from './audit/refusals.ts'
import type { Config } from './config.ts'
import type { Scope } from './auth/api-keys.ts'
import { withDeadline } from './db/deadline.ts'
import { describeError, isUnavailableError } from './db/errors.ts'
import type { WorkerOptions } from './ingest/worker.ts'
import { sendError } from './http/errors.ts'
import { securityHeaders } from './http/security-headers.ts'
import { serverOptions } from './http/server-options.ts'
import authPlugin from './plugins/auth.ts'
import inputPlugin from './plugins/input.ts'
import metricsPlugin from './plugins/metrics.ts'
import workerPlugin from './plugins/worker.ts'
import { ErrorResponse } from './schemas/common.ts'
import { Login, LoginPage } from './schemas/logins.ts'
import type { Services } from './services.ts'

declare module 'fastify' {
  interface FastifyInstance {
    services: Services
    workerOptions: WorkerOptions
    /** bounds a database read of an API route (503 when the database does not answer in time) */
    dbRead<T>(work: Promise<T>): Promise<T>
    /** aborted when the app starts closing, so long requests (POST /ingest) wind down */
    closing: AbortSignal
    /** preHandler of every API route: one rate-limit bucket per key across them all (health, readiness, metrics and docs have none) */
    apiRateLimit: preHandlerAsyncHookHandler
    /**
     * The hooks of an API route in one spread, `...app.apiAccess('logins:read')`: the key must hold
     * the scope (onRequest, before validation), then the shared per-key limiter. The document's
     * `security`, `x-scopes` and error answers follow from it (plugins/auth.ts).
     */
    apiAccess(scope: Scope): { onRequest: onRequestAsyncHookHandler; preHandler: preHandlerAsyncHookHandler }
    /** audits refusals of the PII routes at a bounded cost under a flood */
    refusalAudit: RefusalAudit
    /** every route registered, as "method /url" (HEAD included), to check the document against */
    routeTable: string[]
  }
}

/** Paths pino blanks wherever they appear in a log line: credentials and the two PII fields. */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-access-reason"]',
  'headers.authorization',
  'authorization',
  'apiKey',
  'token',
  'ip',
  'device_id',
  '*.ip',
  '*.device_id',
  '*.*.ip',
  '*.*.device_id',
  'body',
  '*.body',
]

export function loggerOptions(config: Pick<Config, 'LOG_LEVEL' | 'NODE_ENV'>): FastifyServerOptions['logger'] {
  const pretty = config.NODE_ENV === 'development' && process.stdout.isTTY
  return {
    level: config.LOG_LEVEL,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    // The client address is left out of request logs: it is the user's ip.
    serializers: {
      req: (req: { method: string; url: string; id: string }) => ({ method: req.method, url: req.url, id: req.id }),
    },
    ...(pretty ? { transport: { target: 'pino-pretty', options: { translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' } } } : {}),
  }
}

export interface BuildOptions {
  config: Config
  services: Services
  logger?: FastifyServerOptions['logger'] | FastifyServerOptions['loggerInstance']
}

export const OPENAPI_INFO = {
  title: 'login-ingest',
  version: '0.1.0',
  license: { name: 'MIT', url: 'https://opensource.org/licenses/MIT' },
  description:
    'Ingests login events from SQS, masks ip and device_id with keyed pseudonyms, keeps the originals in an ' +
    'envelope-encrypted vault, and serves the masked rows. Authenticate with `Authorization: Bearer <API key>`.',
}

/** pino's numeric levels: a line is written when its level is at least the logger's. */
const LEVELS: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity }

/** The whole service as one Fastify instance; server.ts listens with it, tests inject into it. */
export async function buildApp({ config, services, logger }: BuildOptions): Promise<FastifyInstance> {
  const app = Fastify({
    ...(logger !== undefined && typeof logger === 'object' && 'child' in logger
      ? { loggerInstance: logger }
      : { logger: logger ?? loggerOptions(config) }),
    genReqId: () => crypto.randomUUID(),
    // Fastify's two lines per request become one, at REQUEST_LOG_LEVEL (below).
    logController: new LogController({ disableRequestLogging: true }),
    requestIdHeader: false,
    ...serverOptions(config),
    // Close hooks run under this timeout too, and the worker's waits for its last long polls
    // (up to SQS_WAIT_TIME_SECONDS) and their commit: the shutdown grace is the bound instead.
    pluginTimeout: Math.max(10_000, config.SHUTDOWN_GRACE_MS),
  }).withTypeProvider<TypeBoxTypeProvider>()

  const workerOptions: WorkerOptions = {
    concurrency: config.WORKER_CONCURRENCY,
    waitTimeSeconds: config.SQS_WAIT_TIME_SECONDS,
    visibilityTimeoutSeconds: config.SQS_VISIBILITY_TIMEOUT_SECONDS,
  }
  const routeTable: string[] = []
  app.decorate('routeTable', routeTable)
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) routeTable.push(`${method.toLowerCase()} ${route.url}`)
  })
  app.decorate('services', services)
  app.decorate('workerOptions', workerOptions)
  app.decorate('dbRead', <T>(work: Promise<T>) => withDeadline(work, config.API_DATABASE_TIMEOUT_MS))
  const closing = new AbortController()
  app.decorate('closing', closing.signal)
  app.addHook('preClose', async () => closing.abort())
  const refusals = new RefusalAudit(services.sql, { perWindow: config.AUDIT_REFUSALS_PER_WINDOW, windowMs: config.AUDIT_REFUSAL_WINDOW_MS }, app.log)
  app.decorate('refusalAudit', refusals)
  app.addHook('onClose', () => refusals.close())
  app.addSchema(ErrorResponse)
  app.addSchema(Login)
  app.addSchema(LoginPage)

  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (error.validation) {
      const where = error.validationContext ?? 'request'
      // Ajv's own text for an unknown property does not say which one; the caller needs the name.
      const unknown = error.validation[0]?.keyword === 'additionalProperties' ? error.validation[0].params.additionalProperty : undefined
      const message = typeof unknown === 'string'
        ? `${where}/${unknown.slice(0, 64)} is not a known ${where === 'body' ? 'field' : 'parameter'}`
        : error.message.startsWith(where) ? error.message : `${where} ${error.message}`
      return sendError(reply, 400, message)
    }
    if (isUnavailableError(error)) {
      request.log.warn({ err: describeError(error) }, 'database unavailable')
      return sendError(reply, 503, 'the database is unavailable; try again shortly')
    }
    const status = error.statusCode ?? 500
    if (status < 500) return sendError(reply, status, error.message)
    request.log.error({ err: { code: error.code, name: error.name, stack: error.stack } }, 'request failed')
    return sendError(reply, 500, `the request failed; quote request id ${request.id} to the operators`, { requestId: request.id })
  })

  // Validated inputs the database would still refuse, answered as 400 instead of failing in a query
  // as a 500: PostgreSQL text cannot hold NUL, and Ajv's type coercion turns "Infinity" or "1e400"
  // into an infinite number that passes the integer, minimum and maximum checks.
  app.addHook('preHandler', async (request, reply) => {
    for (const [where, values] of [['querystring', request.query], ['params', request.params]] as const) {
      for (const [name, value] of Object.entries((values ?? {}) as Record<string, unknown>)) {
        const problem = [value].flat().some((v) => typeof v === 'string' && v.includes('\u0000'))
          ? 'must not contain NUL characters'
          : typeof value === 'number' && !Number.isFinite(value) ? 'must be a finite number' : null
        if (problem !== null) {
          return sendError(reply, 400, `${where}/${name.slice(0, 64)} ${problem}`)
        }
      }
    }
  })

  // One line per answered request at REQUEST_LOG_LEVEL; no hook at all when that level is off.
  const requestLevel = config.REQUEST_LOG_LEVEL
  if (requestLevel !== 'silent' && (LEVELS[requestLevel] ?? 0) >= (LEVELS[app.log.level] ?? 0)) {
    app.addHook('onResponse', (request, reply, done) => {
      request.log[requestLevel]({ method: request.method, url: request.url, statusCode: reply.statusCode, ms: Math.round(reply.elapsedTime * 10) / 10 }, 'request')
      done()
    })
  }

  const headers = securityHeaders()
  app.addHook('onRequest', (_request, reply, done) => {
    reply.headers(headers)
    done()
  })
  await app.register(rateLimit, { global: false })
  // One limiter, so one bucket per API key across all the API routes (a limit in each route's
  // config would give each route a store of its own). Authentication ran on onRequest, so only
  // known keys reach this preHandler.
  app.decorate('apiRateLimit', app.rateLimit({
    max: config.RATE_LIMIT_PER_MINUTE,
    timeWindow: 60_000,
    keyGenerator: (request) => request.apiKey?.name ?? request.ip,
  }) as preHandlerAsyncHookHandler)
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: OPENAPI_INFO,
      // Relative: Swagger UI and generated clients call the server that served the document.
      servers: [{ url: '/', description: 'the service that serves this document' }],
      components: {
        securitySchemes: {
          bearer: {
            type: 'http',
            scheme: 'bearer',
            description:
              'An API key. On embedded defaults (`npm start` with nothing configured) the demo key, with every scope, is ' +
              'printed in the start-up banner and kept as `demoApiKey` in `.data/secrets.json`. In production: `npm run key`.',
          },
        },
      },
      tags: [
        { name: 'logins', description: 'masked login rows' },
        { name: 'ingestion', description: 'draining the queue on demand' },
        { name: 'pii', description: 'audited access to the originals' },
        { name: 'operations', description: 'health, readiness, metrics' },
      ],
    },
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`) },
    transformObject: (document) => ('openapiObject' in document ? examplesNotValues(optionalDefaults(document.openapiObject)) : document.swaggerObject),
  })
  await app.register(swaggerUi, { routePrefix: '/docs', staticCSP: false })
  await app.register(authPlugin, { keys: services.apiKeys, failuresPerMinute: config.AUTH_FAILURES_PER_MINUTE })
  await app.register(inputPlugin)
  app.decorate('apiAccess', (scope: Scope) => ({ onRequest: app.requireScope(scope), preHandler: app.apiRateLimit }))
  await app.register(workerPlugin, { services, enabled: config.WORKER_ENABLED, worker: workerOptions, retentionDays: config.PII_RETENTION_DAYS, progressIntervalMs: config.INGEST_PROGRESS_INTERVAL_MS, duplicatesRefreshMs: config.DUPLICATES_REFRESH_MS })
  await app.register(metricsPlugin)
  for (const route of [healthz, readyz, logins, duplicates, piiRoute, erase, audit, ingest, rejected, resubmit]) await app.register(route)
  return app
}

interface DocumentedOperation {
  parameters?: { required?: boolean; schema?: { default?: unknown } }[]
  requestBody?: { required?: boolean; content?: Record<string, { schema?: { required?: string[]; properties?: Record<string, { default?: unknown }> } }> }
}

/**
 * A parameter or body field with a default may be left out (the validator fills it in), but
 * TypeBox lists it as required and the document would tell clients to send it: mark it optional,
 * and a body whose every field has a default optional too. Copies, never edits, the route schemas.
 */
function optionalDefaults<T>(document: T): T {
  const paths = (document as { paths?: Record<string, Record<string, DocumentedOperation>> }).paths ?? {}
  for (const operation of Object.values(paths).flatMap((methods) => Object.values(methods))) {
    if (operation.parameters) {
      operation.parameters = operation.parameters.map((p) => (p.schema?.default === undefined ? p : { ...p, required: false }))
    }
    const json = operation.requestBody?.content?.['application/json']
    const schema = json?.schema
    if (operation.requestBody && json && schema?.required) {
      const required = schema.required.filter((name) => schema.properties?.[name]?.default === undefined)
      json.schema = { ...schema, required }
      if (required.length === 0) {
        delete json.schema.required
        operation.requestBody = { ...operation.requestBody, required: false }
      }
    }
  }
  return document
}

/**
 * Swagger UI fills a parameter's `example` into its input on "Try it out", so Execute sent eight
 * example filters and found one row. As `x-example` it is shown as an example and not filled in.
 */
function examplesNotValues<T>(document: T): T {
  const paths = (document as { paths?: Record<string, Record<string, { parameters?: Record<string, unknown>[] }>> }).paths ?? {}
  for (const operation of Object.values(paths).flatMap((methods) => Object.values(methods))) {
    operation.parameters = operation.parameters?.map(({ example, ...rest }) => (example === undefined ? rest : { ...rest, 'x-example': example }))
  }
  return document
}
