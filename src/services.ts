import { SQSClient } from '@aws-sdk/client-sqs'
import type { FastifyBaseLogger } from 'fastify'
import type { Sql } from 'postgres'
import { SCOPES, apiKeyEntry, parseApiKeys, type ApiKey } from './auth/api-keys.ts'
import type { Config } from './config.ts'
import { createSql } from './db/sql.ts'
import { latestMigration } from './db/migrate.ts'
import { pageCursors, type PageCursors } from './logins/cursor.ts'
import { LoginPipeline } from './ingest/pipeline.ts'
import { LoginQueue } from './ingest/queue.ts'
import { parseKeyring, type Keyring } from './pii/keys.ts'
import { IpPrefixer, parseIpPrefixKeys } from './pii/ip-prefix.ts'
import { Masker } from './pii/mask.ts'
import { Vault, keyringProvider } from './pii/vault.ts'
import { prepareDatabase } from './prepare.ts'

/** Everything the app needs from the outside world; built by buildServices for the server, the OpenAPI export and the tests. */
export interface Services {
  sql: Sql
  queue: LoginQueue
  /** the dead-letter queue, watched for the depth metric; null when not configured */
  dlq: LoginQueue | null
  masker: Masker
  /** prefix-preserving ip pseudonyms; null when IP_PREFIX_KEYS is off */
  ipPrefixer: IpPrefixer | null
  vault: Vault
  pipeline: LoginPipeline
  apiKeys: ApiKey[]
  /** signs page cursors; derived from the active mask key so every replica accepts every cursor */
  cursors: PageCursors
  /** migration the code expects; readiness waits for it */
  schemaVersion: string
  /** which parts run embedded, and the demo key when there is one */
  embedded: {
    database: boolean
    queue: EmbeddedQueueInfo | null
    demoApiKey: string | null
  }
}

/** Where the embedded queue listens, for the banner and DATA_DIR/runtime.json. */
export interface EmbeddedQueueInfo {
  endpoint: string
  queueUrl: string
  dlqUrl: string
  /** `http://localhost:<port>/000000000000/login-queue`, as the exercise's aws commands spell it */
  localstackUrl: string
  /** EMBEDDED_QUEUE_PORT was taken (a real LocalStack?), so another port is used */
  portTaken: boolean
}

/** Whether the service keeps anything in DATA_DIR: the embedded database or generated secrets. */
export function usesDataDir(config: Config): boolean {
  return config.DATABASE_URL === undefined || config.MASK_KEYS === undefined || config.VAULT_MASTER_KEYS === undefined ||
    config.API_KEYS === undefined
}

/** What differs between the server, the OpenAPI export and the tests; the rest is derived from it. */
export interface ServiceParts {
  sql: Sql
  queue: LoginQueue
  /** the dead-letter queue, when there is one to watch */
  dlq?: LoginQueue | null
  secrets: Pick<Secrets, 'mask' | 'master' | 'ipPrefix' | 'apiKeys'>
  /** default: nothing embedded */
  embedded?: Services['embedded']
}

/**
 * The services on a database and a queue: masker, vault, pipeline, cursors and the expected
 * schema version, wired the same way for the server, the OpenAPI export and the tests. Connects
 * to nothing itself (postgres.js and the SQS client connect on first use).
 */
export async function buildServices(parts: ServiceParts): Promise<Services> {
  const { sql, secrets } = parts
  const masker = new Masker(secrets.mask)
  const vault = new Vault(sql, keyringProvider(secrets.master))
  const ipPrefixer = secrets.ipPrefix === null ? null : await IpPrefixer.create(secrets.ipPrefix)
  return {
    sql,
    queue: parts.queue,
    dlq: parts.dlq ?? null,
    masker,
    ipPrefixer,
    vault,
    pipeline: new LoginPipeline(sql, masker, vault, ipPrefixer),
    apiKeys: secrets.apiKeys,
    cursors: pageCursors(secrets.mask.active.secret),
    schemaVersion: await latestMigration(),
    embedded: parts.embedded ?? { database: false, queue: null, demoApiKey: null },
  }
}

export interface RunningServices extends Services {
  close(): Promise<void>
}

export interface Secrets {
  mask: Keyring
  master: Keyring
  ipPrefix: Keyring | null
  apiKeys: ApiKey[]
  demoApiKey: string | null
}

/**
 * Connects to the database and the queue named in the config, or starts their embedded forms
 * for the ones not named (never in production: the config refuses that). The embedded modules
 * are imported only when used, so production never loads PGlite or the emulator.
 */
export async function startServices(config: Config, log: FastifyBaseLogger, options: { command?: string } = {}): Promise<RunningServices> {
  const closers: (() => Promise<void>)[] = []
  const close = async (): Promise<void> => {
    for (const closer of closers.reverse()) await closer().catch((error: unknown) => log.error({ err: error }, 'error while closing'))
  }
  try {
    if (usesDataDir(config)) {
      const { lockDataDir } = await import('./embedded/data-dir.ts')
      const lock = await lockDataDir(config.DATA_DIR, options.command ?? 'npm start')
      closers.push(() => lock.release())
    }
    const secrets = await resolveSecrets(config, log)

    let databaseUrl = config.DATABASE_URL
    let poolMax = config.DATABASE_POOL_MAX
    if (databaseUrl === undefined) {
      const { startEmbeddedDatabase } = await import('./embedded/database.ts')
      const embedded = await startEmbeddedDatabase(`${config.DATA_DIR}/pglite`)
      closers.push(() => embedded.close())
      databaseUrl = embedded.url
      poolMax = 1 // PGlite serves one session; more connections give wrong results
      log.warn({ dataDir: `${config.DATA_DIR}/pglite` }, 'DATABASE_URL not set: using the embedded PostgreSQL (PGlite)')
    }
    const sql = createSql({ url: databaseUrl, max: poolMax, statementTimeoutMs: config.DATABASE_STATEMENT_TIMEOUT_MS })
    closers.push(() => sql.end({ timeout: 5 }))

    const applied = await prepareDatabase(sql, { mask: secrets.mask, master: secrets.master, ipPrefix: secrets.ipPrefix })
    if (applied.length > 0) log.info({ applied }, 'database migrations applied')

    let queue: LoginQueue
    let dlq: LoginQueue | null = null
    let embeddedQueue: EmbeddedQueueInfo | null = null
    let samplesTo: { client: SQSClient; queueUrl: string } | null = null
    if (config.SQS_QUEUE_URL === undefined) {
      const { startEmbeddedQueue, localstackStyleUrl } = await import('./embedded/queue.ts')
      const embedded = await startEmbeddedQueue({
        region: config.AWS_REGION,
        visibilityTimeoutSeconds: config.SQS_VISIBILITY_TIMEOUT_SECONDS,
        port: config.EMBEDDED_QUEUE_PORT,
      })
      closers.push(() => embedded.close())
      queue = new LoginQueue(embedded.client, embedded.queueUrl)
      dlq = new LoginQueue(embedded.client, embedded.dlqUrl)
      embeddedQueue = {
        endpoint: embedded.endpoint,
        queueUrl: embedded.queueUrl,
        dlqUrl: embedded.dlqUrl,
        localstackUrl: localstackStyleUrl(embedded.port),
        portTaken: embedded.portTaken,
      }
      log.warn({ endpoint: `http://localhost:${embedded.port}`, queueUrl: embeddedQueue.localstackUrl }, 'SQS_QUEUE_URL not set: using the embedded SQS emulator')
      if (embedded.portTaken) {
        log.warn({ port: config.EMBEDDED_QUEUE_PORT }, `EMBEDDED_QUEUE_PORT ${config.EMBEDDED_QUEUE_PORT} is taken (a LocalStack?): the embedded queue listens on ${embedded.port} instead`)
      }
      samplesTo = { client: embedded.client, queueUrl: embedded.queueUrl }
    } else {
      // The SDK reads AWS_ENDPOINT_URL and credentials from the environment itself.
      const client = new SQSClient({ region: config.AWS_REGION, ...(config.AWS_ENDPOINT_URL ? { endpoint: config.AWS_ENDPOINT_URL } : {}) })
      closers.push(async () => client.destroy())
      queue = new LoginQueue(client, config.SQS_QUEUE_URL)
      if (config.SQS_DLQ_URL !== undefined) dlq = new LoginQueue(client, config.SQS_DLQ_URL)
    }

    const services = await buildServices({
      sql,
      queue,
      dlq,
      secrets,
      embedded: { database: config.DATABASE_URL === undefined, queue: embeddedQueue, demoApiKey: secrets.demoApiKey },
    })
    if (samplesTo !== null) {
      const { seedMissingSamples } = await import('./embedded/samples.ts')
      const seeded = await seedMissingSamples({
        sql,
        masker: services.masker,
        vault: services.vault,
        ...samplesTo,
        onBatch: (sent) => log.debug({ sent }, 'embedded queue: sample messages sent'),
      })
      if (seeded.sent > 0) {
        log.info({ sent: seeded.sent }, seeded.sent === 100
          ? 'embedded queue filled with the 100 sample logins'
          : 'embedded queue: samples an earlier start had not stored were sent again')
      }
    }
    return { ...services, close }
  } catch (error) {
    await close()
    throw error
  }
}

/** Keys from the environment; outside production the missing ones come from DATA_DIR, generated once. */
export async function resolveSecrets(config: Config, log: FastifyBaseLogger): Promise<Secrets> {
  const needsEmbedded = config.MASK_KEYS === undefined || config.VAULT_MASTER_KEYS === undefined || config.API_KEYS === undefined
  let embedded = null
  if (needsEmbedded) {
    const { loadOrCreateEmbeddedSecrets } = await import('./embedded/secrets.ts')
    const loaded = await loadOrCreateEmbeddedSecrets(config.DATA_DIR)
    embedded = loaded.secrets
    log.warn(
      { path: loaded.path, created: loaded.created },
      'development keys in use (MASK_KEYS, VAULT_MASTER_KEYS or API_KEYS not set): fine for a demo, never for real data',
    )
  }
  const mask = parseKeyring('MASK_KEYS', config.MASK_KEYS ?? embedded?.MASK_KEYS ?? '')
  const master = parseKeyring('VAULT_MASTER_KEYS', config.VAULT_MASTER_KEYS ?? embedded?.VAULT_MASTER_KEYS ?? '')
  const ipPrefixText = config.IP_PREFIX_KEYS ?? embedded?.IP_PREFIX_KEYS
  const ipPrefix = ipPrefixText === undefined ? null : parseIpPrefixKeys(ipPrefixText)
  const demoApiKey = config.API_KEYS === undefined ? (embedded?.demoApiKey ?? null) : null
  const apiKeys = parseApiKeys(config.API_KEYS ?? (demoApiKey ? apiKeyEntry('demo', [...SCOPES], demoApiKey) : ''))
  return { mask, master, ipPrefix, apiKeys, demoApiKey }
}
