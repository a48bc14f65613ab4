import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
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

/**
 * How the service is started: `build` compiles it first (tsc, as `npm run build` does, into a
 * temporary folder) and runs `node <build>/src/server.js` as the container image does; `tsx`
 * runs the TypeScript through tsx's loader, which adds its own thread (about 45 MiB of RSS).
 */
export type ServiceRuntime = { kind: 'tsx' } | { kind: 'build'; folder: string }

export function prepareRuntime(kind: 'tsx' | 'build'): ServiceRuntime & { cleanup(): void } {
  if (kind === 'tsx') return { kind, cleanup: () => {} }
  const folder = mkdtempSync(join(tmpdir(), 'li-bench-build-'))
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json', '--outDir', folder], { stdio: 'inherit' })
  execFileSync(process.execPath, ['scripts/copy-build-assets.mjs', folder], { stdio: 'inherit' })
  // The compiled code finds its packages as the image's does, in a node_modules beside it.
  symlinkSync(resolve('node_modules'), join(folder, 'node_modules'), 'dir')
  return { kind, folder, cleanup: () => rmSync(folder, { recursive: true, force: true }) }
}

export interface ServiceOptions {
  runtime: ServiceRuntime
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
 * its own. Resolves once GET /healthz answers.
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
    // BENCH_IP_PREFIX=on: the optional ipcrypt-pfx pseudonym, to compare ingestion with it and without.
    ...(process.env.BENCH_IP_PREFIX === 'on' ? { IP_PREFIX_KEYS: `p1:${randomBytes(32).toString('base64')}` } : {}),
  }
  const profile = options.cpuProfDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${options.cpuProfDir}`]
  const entry = options.runtime.kind === 'build' ? [join(options.runtime.folder, 'src', 'server.js')] : ['--import', 'tsx', 'src/server.ts']
  const child = spawnNode([...profile, ...(process.env.SERVICE_NODE_FLAGS?.split(' ').filter(Boolean) ?? []), ...entry], env)
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
