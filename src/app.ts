import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Fastify, { type FastifyError, type FastifyInstance, type FastifyServerOptions } from 'fastify'
import healthz from '../routes/healthz.ts'
import logins from '../routes/logins/index.ts'
import readyz from '../routes/readyz.ts'
import type { Config } from './config.ts'
import authPlugin from './plugins/auth.ts'
import workerPlugin from './plugins/worker.ts'
import { ErrorResponse } from './schemas/common.ts'
import { Login, LoginPage } from './schemas/logins.ts'
import type { Services } from './services.ts'

declare module 'fastify' {
  interface FastifyInstance {
    services: Services
  }
}

/** Paths pino blanks wherever they appear in a log line: credentials and the two PII fields. */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
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
    // The client address is logged by neither request nor response serializers: it is the user's ip.
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

/** The whole service as one Fastify instance; server.ts listens with it, tests inject into it. */
export async function buildApp({ config, services, logger }: BuildOptions): Promise<FastifyInstance> {
  const app = Fastify({
    ...(logger !== undefined && typeof logger === 'object' && 'child' in logger
      ? { loggerInstance: logger }
      : { logger: logger ?? loggerOptions(config) }),
    genReqId: () => crypto.randomUUID(),
    requestIdHeader: false,
    // Refuse unknown query parameters and body fields instead of silently dropping them.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', useDefaults: true, allErrors: false } },
  }).withTypeProvider<TypeBoxTypeProvider>()

  app.decorate('services', services)
  app.addSchema(ErrorResponse)
  app.addSchema(Login)
  app.addSchema(LoginPage)

  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (error.validation) {
      return reply.code(400).send({ statusCode: 400, error: 'Bad Request', message: `${error.validationContext ?? 'request'}${error.message.replace(/^(querystring|body|params|headers)/, '')}` })
    }
    const status = error.statusCode ?? 500
    if (status < 500) {
      return reply.code(status).send({ statusCode: status, error: error.name === 'FastifyError' ? 'Bad Request' : error.name, message: error.message })
    }
    request.log.error({ err: { code: error.code, name: error.name, stack: error.stack } }, 'request failed')
    return reply.code(status).send({
      statusCode: status,
      error: 'Internal Server Error',
      message: `the request failed; quote request id ${request.id} to the operators`,
      requestId: request.id,
    })
  })

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'login-ingest',
        version: '0.1.0',
        description: 'Ingests login events from SQS, masks ip and device_id with keyed pseudonyms, and serves the masked rows.',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'API key (npm run key)' } } },
      tags: [
        { name: 'operations', description: 'health, readiness, metrics' },
        { name: 'logins', description: 'masked login rows' },
      ],
    },
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`) },
  })
  await app.register(swaggerUi, { routePrefix: '/docs' })
  await app.register(authPlugin, { keys: services.apiKeys })
  await app.register(workerPlugin, {
    services,
    enabled: config.WORKER_ENABLED,
    worker: {
      concurrency: config.WORKER_CONCURRENCY,
      waitTimeSeconds: config.SQS_WAIT_TIME_SECONDS,
      visibilityTimeoutSeconds: config.SQS_VISIBILITY_TIMEOUT_SECONDS,
    },
  })
  await app.register(healthz)
  await app.register(readyz)
  await app.register(logins)
  return app
}
