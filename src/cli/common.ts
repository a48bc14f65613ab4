import { access } from 'node:fs/promises'
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { SQSClient } from '@aws-sdk/client-sqs'
import pino from 'pino'
import type { Sql } from 'postgres'
import { ConfigError, loadConfig, type Config } from '../config.ts'
import { createSql } from '../db/sql.ts'
import { DataDirLockedError, lockDataDir, readRuntimeInfo, type RuntimeInfo } from '../embedded/data-dir.ts'
import { resolveSecrets, type Secrets } from '../services.ts'

/*
 * What every command-line tool shares: its options (with --help), one-line errors and exit
 * codes, the database (DATABASE_URL, else the embedded PGlite of DATA_DIR under its lock), the
 * queue (SQS_QUEUE_URL, else the running service's embedded one) and the running service's API.
 *
 * Exit codes: 0 done, 1 the work failed (configuration, database, queue, DATA_DIR in use),
 * 2 the command line is wrong (unknown option, bad value). Errors are one line on stderr:
 * `login-ingest <cli>: <problem>`.
 */

/** A wrong command line: exit 2. */
export class UsageError extends Error {}

/** A failure the user can act on, said in one line: exit 1. */
export class CliError extends Error {}

export interface Cli<O extends NonNullable<ParseArgsConfig['options']>> {
  /** the npm script, e.g. "send" */
  name: string
  /** the whole --help text, starting with the usage line */
  usage: string
  options: O
  allowPositionals?: boolean
}

/** Parses the command line; --help prints the usage and exits 0, a wrong option is a UsageError. */
export function parseCli<O extends NonNullable<ParseArgsConfig['options']>>(cli: Cli<O>, args: string[] = process.argv.slice(2)) {
  const options = { ...cli.options, help: { type: 'boolean', short: 'h' } } as O & { help: { type: 'boolean'; short: 'h' } }
  let parsed
  try {
    parsed = parseArgs({ args, options, allowPositionals: cli.allowPositionals ?? false, strict: true })
  } catch (error) {
    // Node's text adds advice about "--" that does not fit one line; keep its first sentence.
    const text = (error as Error).message.split(/\. /)[0]?.replace(/\.$/, '') ?? 'bad command line'
    throw new UsageError(`${text.charAt(0).toLowerCase()}${text.slice(1)} (see npm run ${cli.name} -- --help)`)
  }
  if ((parsed.values as Record<string, unknown>).help === true) {
    process.stdout.write(`${cli.usage.trim()}\n`)
    process.exit(0)
  }
  return parsed
}

/** A positive integer option, or a UsageError naming it. */
export function integerOption(name: string, text: string | undefined, limits: { min?: number; max?: number } = {}): number | undefined {
  if (text === undefined) return undefined
  const min = limits.min ?? 1
  const max = limits.max ?? Number.MAX_SAFE_INTEGER
  const value = /^\d+$/.test(text) ? Number(text) : Number.NaN
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new UsageError(`--${name} must be an integer from ${min} to ${max}`)
  }
  return value
}

/** Runs a CLI's main and turns what it throws into one line and the exit code. */
export async function runCli(name: string, main: () => Promise<void>): Promise<void> {
  try {
    await main()
  } catch (error) {
    const known = error instanceof UsageError || error instanceof CliError || error instanceof ConfigError || error instanceof DataDirLockedError
    const message = known ? error.message : describe(error)
    process.stderr.write(`login-ingest ${name}: ${message}\n`)
    process.exit(error instanceof UsageError ? 2 : 1)
  }
}

/** One line for an unexpected error: its message (and code), never a stack. */
export function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error)
  const code = (error as { code?: unknown }).code
  const first = (error.message || error.name).split('\n')[0] ?? error.name
  return typeof code === 'string' && !first.includes(code) ? `${first} (${code})` : first
}

export function cliConfig(): Config {
  return loadConfig()
}

/**
 * The mask and master keys as the service resolves them (environment, else DATA_DIR/secrets.json);
 * logs nothing. DATA_DIR is read only when a key is missing from the environment.
 */
export function cliSecrets(config: Config): Promise<Secrets> {
  return resolveSecrets({ ...config, API_KEYS: config.API_KEYS ?? '' }, pino({ level: 'silent' }))
}

export interface CliDatabase {
  sql: Sql
  /** the embedded PGlite of DATA_DIR (then this process holds DATA_DIR's lock) */
  embedded: boolean
  close(): Promise<void>
}

/**
 * The database: DATABASE_URL, else DATA_DIR's PGlite, opened under DATA_DIR's lock (PGlite
 * serves one process; a running service or another CLI makes this throw the lock's one line).
 * `create: false` refuses a DATA_DIR that has no database yet instead of creating an empty one.
 */
export async function openDatabase(
  config: Config,
  command: string,
  options: { max?: number; statementTimeoutMs?: number; create?: boolean } = {},
): Promise<CliDatabase> {
  const statementTimeoutMs = options.statementTimeoutMs ?? config.DATABASE_STATEMENT_TIMEOUT_MS
  if (config.DATABASE_URL !== undefined) {
    const sql = createSql({ url: config.DATABASE_URL, max: options.max ?? 1, statementTimeoutMs })
    return { sql, embedded: false, close: () => sql.end({ timeout: 5 }) }
  }
  if (config.NODE_ENV === 'production') throw new ConfigError('DATABASE_URL', 'is required when NODE_ENV=production')
  const lock = await lockDataDir(config.DATA_DIR, command)
  try {
    const path = `${config.DATA_DIR}/pglite`
    if (options.create !== true && !(await exists(path))) {
      throw new CliError(`DATA_DIR ${config.DATA_DIR} has no embedded database yet: start the service once (npm start), or set DATABASE_URL`)
    }
    const { startEmbeddedDatabase } = await import('../embedded/database.ts')
    const database = await startEmbeddedDatabase(path)
    // PGlite serves one session: more connections would give wrong results.
    const sql = createSql({ url: database.url, max: 1, statementTimeoutMs })
    return {
      sql,
      embedded: true,
      async close() {
        await sql.end({ timeout: 5 })
        await database.close()
        await lock.release()
      },
    }
  } catch (error) {
    await lock.release()
    throw error
  }
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(() => true, () => false)
}

/** A queue that does not answer fails the call (after the SDK's retries) instead of hanging. */
const QUEUE_TIMEOUTS = { connectionTimeout: 5_000, requestTimeout: 30_000 }

export interface CliQueue {
  client: SQSClient
  queueUrl: string
  dlqUrl: string | undefined
  /** where it came from, for messages */
  source: 'SQS_QUEUE_URL' | 'embedded'
  close(): void
}

/**
 * The queue: SQS_QUEUE_URL (AWS_ENDPOINT_URL and the SDK's credential chain), else the embedded
 * emulator of the service running on DATA_DIR (from its runtime.json), else a CliError.
 */
export async function resolveQueue(config: Config, runtime?: RuntimeInfo | null): Promise<CliQueue> {
  if (config.SQS_QUEUE_URL !== undefined) {
    const client = new SQSClient({ region: config.AWS_REGION, requestHandler: QUEUE_TIMEOUTS, ...(config.AWS_ENDPOINT_URL ? { endpoint: config.AWS_ENDPOINT_URL } : {}) })
    return { client, queueUrl: config.SQS_QUEUE_URL, dlqUrl: config.SQS_DLQ_URL, source: 'SQS_QUEUE_URL', close: () => client.destroy() }
  }
  const info = runtime === undefined ? await readRuntimeInfo(config.DATA_DIR) : runtime
  if (info?.queue == null) {
    throw new CliError(
      `no queue: SQS_QUEUE_URL is not set and no service with an embedded queue runs on DATA_DIR ${config.DATA_DIR} ` +
        '(start it with npm start, or set SQS_QUEUE_URL)',
    )
  }
  const { EMULATOR_CREDENTIALS } = await import('../embedded/queue.ts')
  const client = new SQSClient({ region: config.AWS_REGION, endpoint: info.queue.endpoint, credentials: EMULATOR_CREDENTIALS, requestHandler: QUEUE_TIMEOUTS })
  return { client, queueUrl: info.queue.queueUrl, dlqUrl: info.queue.dlqUrl, source: 'embedded', close: () => client.destroy() }
}

/** The API of the service running on DATA_DIR, called with DATA_DIR's demo key. */
export interface ServiceApi {
  base: string
  pid: number
  call<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T>
}

/**
 * The running service that holds DATA_DIR's embedded database, or null when none runs. Its
 * data can then be reached only through its API (PGlite serves one process).
 */
export async function embeddedService(config: Config): Promise<ServiceApi | null> {
  if (config.DATABASE_URL !== undefined) return null
  const runtime = await readRuntimeInfo(config.DATA_DIR)
  if (runtime === null || !runtime.embeddedDatabase) return null
  const { demoApiKey } = await resolveSecrets(config, pino({ level: 'silent' }))
  if (demoApiKey === null) {
    throw new CliError(`the service (pid ${runtime.pid}) holds the embedded database, but API_KEYS is set here, so there is no demo key to call its API with; unset API_KEYS`)
  }
  return {
    base: runtime.api,
    pid: runtime.pid,
    async call<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
      let response: Response
      try {
        response = await fetch(`${runtime.api}${path}`, {
          method,
          headers: { authorization: `Bearer ${demoApiKey}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
          signal: AbortSignal.timeout(60_000),
        })
      } catch (error) {
        throw new CliError(`the service (pid ${runtime.pid}) at ${runtime.api} does not answer: ${describe((error as { cause?: unknown }).cause ?? error)}`)
      }
      const text = await response.text()
      if (!response.ok) {
        let message = text.slice(0, 300)
        try {
          message = (JSON.parse(text) as { message?: string }).message ?? message
        } catch { /* not JSON: keep the text */ }
        throw new CliError(`${method} ${path} at ${runtime.api} answered ${response.status}: ${message}`)
      }
      return JSON.parse(text) as T
    },
  }
}
