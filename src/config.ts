import { Type, type Static } from 'typebox'
import { Value } from 'typebox/value'

const PROXY_ADDRESS = '(loopback|linklocal|uniquelocal|[0-9a-fA-F.:]+(/[0-9]{1,3})?)'

/**
 * The environment the service reads, as one TypeBox schema. Every variable users may set is
 * here; README.md documents each one. Values arrive as strings and are converted by the schema.
 */
export const EnvSchema = Type.Object({
  NODE_ENV: Type.Enum(['development', 'production', 'test'], { default: 'development' }),
  PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 3000 }),
  HOST: Type.String({ minLength: 1, default: '127.0.0.1' }),
  LOG_LEVEL: Type.Enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], { default: 'info' }),
  REQUEST_LOG_LEVEL: Type.Enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], { default: 'debug' }),

  DATABASE_URL: Type.Optional(Type.String({ pattern: '^postgres(ql)?://', description: 'a postgres:// URL' })),
  DATABASE_POOL_MAX: Type.Integer({ minimum: 1, maximum: 100, default: 10 }),
  DATABASE_STATEMENT_TIMEOUT_MS: Type.Integer({ minimum: 0, maximum: 3_600_000, default: 30_000 }),
  API_DATABASE_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 600_000, default: 10_000 }),

  SQS_QUEUE_URL: Type.Optional(Type.String({ pattern: '^https?://', description: 'an http(s):// queue URL' })),
  SQS_DLQ_URL: Type.Optional(Type.String({ pattern: '^https?://', description: 'an http(s):// queue URL' })),
  AWS_REGION: Type.String({ minLength: 1, default: 'us-east-1' }),
  AWS_ENDPOINT_URL: Type.Optional(Type.String({ pattern: '^https?://', description: 'an http(s):// URL' })),
  SQS_WAIT_TIME_SECONDS: Type.Integer({ minimum: 0, maximum: 20, default: 20 }),
  SQS_VISIBILITY_TIMEOUT_SECONDS: Type.Integer({ minimum: 5, maximum: 43_200, default: 60 }),
  EMBEDDED_QUEUE_PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 4566 }),

  WORKER_ENABLED: Type.Boolean({ default: true }),
  WORKER_CONCURRENCY: Type.Integer({ minimum: 1, maximum: 64, default: 2 }),
  INGEST_PROGRESS_INTERVAL_MS: Type.Integer({ minimum: 0, maximum: 3_600_000, default: 5000 }),
  DUPLICATES_REFRESH_MS: Type.Integer({ minimum: 0, maximum: 600_000, default: 1000 }),

  MASK_KEYS: Type.Optional(Type.String({ minLength: 1 })),
  VAULT_MASTER_KEYS: Type.Optional(Type.String({ minLength: 1 })),
  IP_PREFIX_KEYS: Type.Optional(Type.String({ minLength: 1 })),
  API_KEYS: Type.Optional(Type.String()),
  PII_RETENTION_DAYS: Type.Optional(Type.Integer({ minimum: 1, maximum: 36_500 })),
  RATE_LIMIT_PER_MINUTE: Type.Integer({ minimum: 1, maximum: 1_000_000, default: 600 }),
  AUTH_FAILURES_PER_MINUTE: Type.Integer({ minimum: 1, maximum: 1_000_000, default: 30 }),
  AUDIT_REFUSALS_PER_WINDOW: Type.Integer({ minimum: 1, maximum: 1_000_000, default: 20 }),
  AUDIT_REFUSAL_WINDOW_MS: Type.Integer({ minimum: 100, maximum: 3_600_000, default: 60_000 }),
  HTTP_REQUEST_TIMEOUT_MS: Type.Integer({ minimum: 1000, maximum: 600_000, default: 30_000 }),
  TRUST_PROXY: Type.String({
    pattern: `^(true|false|[0-9]+|${PROXY_ADDRESS}(\\s*,\\s*${PROXY_ADDRESS})*)$`,
    default: 'false',
    description: 'true, false, a number of hops, or addresses/CIDRs separated by commas',
  }),

  DATA_DIR: Type.String({ minLength: 1, default: '.data' }),
  SHUTDOWN_GRACE_MS: Type.Integer({ minimum: 1000, maximum: 600_000, default: 25_000 }),
})

export type Config = Readonly<Static<typeof EnvSchema>>

/** TRUST_PROXY as Fastify's `trustProxy` takes it (a number of hops: the nearest ones are trusted). */
export function trustProxy(value: string): boolean | string | ((address: string, hop: number) => boolean) {
  if (value === 'true' || value === 'false') return value === 'true'
  if (!/^[0-9]+$/.test(value)) return value
  const hops = Number(value)
  return (_address, hop) => hop < hops
}

export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID'
  constructor(
    readonly variable: string,
    problem: string,
  ) {
    super(`${variable}: ${problem}`)
  }
}

/** Time a shutdown keeps, beyond the long poll, to commit and delete what the last polls brought. */
export const SHUTDOWN_COMMIT_MARGIN_MS = 5000

/** Variables that must be set when NODE_ENV=production, so a pod never falls back to embedded parts. */
const REQUIRED_IN_PRODUCTION = ['DATABASE_URL', 'SQS_QUEUE_URL', 'MASK_KEYS', 'VAULT_MASTER_KEYS', 'API_KEYS'] as const

function describeSchemaProblem(variable: string, keyword: string, message: string): string {
  const schema = (EnvSchema.properties as unknown as Record<string, Record<string, unknown>>)[variable]
  if (keyword === 'enum' && schema?.enum) return `must be one of ${(schema.enum as string[]).join(', ')}`
  if (keyword === 'pattern' && typeof schema?.description === 'string') return `must be ${schema.description}`
  if (keyword === 'type' && schema?.type === 'boolean') return 'must be true or false'
  if ((keyword === 'minimum' || keyword === 'maximum' || keyword === 'type') && schema?.type === 'integer') {
    return `must be an integer from ${String(schema.minimum)} to ${String(schema.maximum)}`
  }
  return message
}

/**
 * Reads and validates the environment. Throws a ConfigError naming the first bad variable.
 * Empty strings count as unset, as shells and compose files often produce them.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const raw: Record<string, string> = {}
  for (const name of Object.keys(EnvSchema.properties)) {
    const value = env[name]
    if (value !== undefined && value.trim() !== '') raw[name] = value.trim()
  }
  // TypeBox converts '1.5', '1e3' or '0x10' to integers (truncating); a config value must be
  // written as plain decimal digits instead.
  for (const [name, value] of Object.entries(raw)) {
    const schema = (EnvSchema.properties as unknown as Record<string, Record<string, unknown>>)[name]
    if (schema?.type === 'integer' && !/^\d+$/.test(value)) throw new ConfigError(name, describeSchemaProblem(name, 'type', ''))
  }
  const converted = Value.Convert(EnvSchema, Value.Default(EnvSchema, raw))
  for (const error of Value.Errors(EnvSchema, converted)) {
    const variable = error.instancePath.replace(/^\//, '').split('/')[0] ?? 'environment'
    throw new ConfigError(variable, describeSchemaProblem(variable, error.keyword, error.message))
  }
  const config = converted as Static<typeof EnvSchema>
  if (config.NODE_ENV === 'production') {
    for (const name of REQUIRED_IN_PRODUCTION) {
      if (config[name] === undefined) {
        throw new ConfigError(name, 'is required when NODE_ENV=production (embedded defaults are for development only)')
      }
    }
  }
  if (config.WORKER_ENABLED && config.SHUTDOWN_GRACE_MS < config.SQS_WAIT_TIME_SECONDS * 1000 + SHUTDOWN_COMMIT_MARGIN_MS) {
    throw new ConfigError(
      'SHUTDOWN_GRACE_MS',
      `must be at least ${config.SQS_WAIT_TIME_SECONDS * 1000 + SHUTDOWN_COMMIT_MARGIN_MS} with SQS_WAIT_TIME_SECONDS=${config.SQS_WAIT_TIME_SECONDS}: ` +
        `a shutdown lets the long polls in flight return and stores what they bring (the wait plus ${SHUTDOWN_COMMIT_MARGIN_MS} ms to commit and delete)`,
    )
  }
  return Object.freeze(config)
}
