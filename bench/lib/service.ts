import { randomBytes } from 'node:crypto'
import { apiKeyEntry, generateApiKey } from '../../src/auth/api-keys.ts'
import { parseKeyring, type Keyring } from '../../src/pii/keys.ts'
import { freePort, spawnNode, type Child } from './proc.ts'
import { CREDENTIALS, REGION } from './sqs.ts'

export interface BenchKeys {
  MASK_KEYS: string
  VAULT_MASTER_KEYS: string
  API_KEYS: string
  mask: Keyring
  master: Keyring
  /** bearer token of a key with logins:read and ingest:run */
  token: string
}

export function benchKeys(): BenchKeys {
  const MASK_KEYS = `k1:${randomBytes(32).toString('base64')}`
  const VAULT_MASTER_KEYS = `m1:${randomBytes(32).toString('base64')}`
  const token = generateApiKey()
  return {
    MASK_KEYS,
    VAULT_MASTER_KEYS,
    API_KEYS: apiKeyEntry('bench', ['logins:read', 'ingest:run'], token),
    mask: parseKeyring('MASK_KEYS', MASK_KEYS),
    master: parseKeyring('VAULT_MASTER_KEYS', VAULT_MASTER_KEYS),
    token,
  }
}

export interface ServiceOptions {
  databaseUrl: string
  queueUrl: string
  endpoint: string
  keys: BenchKeys
  pollers: number
  workerEnabled: boolean
  logLevel: string
  rateLimitPerMinute?: number
  /** write a V8 CPU profile of the service into this folder when it exits */
  cpuProfDir?: string
}

export interface RunningService {
  child: Child
  pid: number
  url: string
}

/**
 * The service as production runs it (NODE_ENV=production, every variable set), in a process of
 * its own: `node --import tsx src/server.ts`. Resolves once GET /healthz answers.
 */
export async function startService(options: ServiceOptions): Promise<RunningService> {
  const port = await freePort()
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    NODE_ENV: 'production',
    HOST: '127.0.0.1',
    PORT: String(port),
    LOG_LEVEL: options.logLevel,
    DATABASE_URL: options.databaseUrl,
    SQS_QUEUE_URL: options.queueUrl,
    AWS_ENDPOINT_URL: options.endpoint,
    AWS_REGION: REGION,
    AWS_ACCESS_KEY_ID: CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: CREDENTIALS.secretAccessKey,
    MASK_KEYS: options.keys.MASK_KEYS,
    VAULT_MASTER_KEYS: options.keys.VAULT_MASTER_KEYS,
    API_KEYS: options.keys.API_KEYS,
    WORKER_ENABLED: String(options.workerEnabled),
    WORKER_CONCURRENCY: String(options.pollers),
    ...(options.rateLimitPerMinute === undefined ? {} : { RATE_LIMIT_PER_MINUTE: String(options.rateLimitPerMinute) }),
  }
  const profile = options.cpuProfDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${options.cpuProfDir}`]
  const child = spawnNode([...profile, '--import', 'tsx', 'src/server.ts'], env)
  const url = `http://127.0.0.1:${port}`
  const deadline = Date.now() + 60_000
  for (;;) {
    if (child.process.exitCode !== null) throw new Error(`the service exited (${child.process.exitCode}):\n${child.tail()}`)
    const ok = await fetch(`${url}/healthz`).then((r) => r.ok, () => false)
    if (ok) break
    if (Date.now() > deadline) {
      await child.stop(1000)
      throw new Error(`the service did not answer /healthz within 60 s:\n${child.tail()}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  return { child, pid: child.pid, url }
}
