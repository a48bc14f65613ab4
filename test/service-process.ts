import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { TestContext } from 'node:test'
import type { EmbeddedQueue } from '../src/embedded/queue.ts'
import { testApiKeys, type TestDatabase, type TestKeys } from './helper.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))

export interface ServiceProcess {
  pid: number
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  stdout(): string
  stderr(): string
  /** the address it listens on, once its log says so */
  address(): string | null
  kill(signal: NodeJS.Signals): void
}

/** The real service, `node --import tsx src/server.ts`, killed after the test whatever happens. */
export function startService(t: TestContext, env: Record<string, string>): ServiceProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')))
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')))
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })))
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  return {
    pid: child.pid ?? -1,
    exit,
    stdout: () => stdout,
    stderr: () => stderr,
    address: () => /"address":"(http:\/\/[^"]+)"[^\n]*login-ingest listening/.exec(stdout)?.[1] ?? null,
    kill: (signal) => child.kill(signal),
  }
}

/**
 * The environment of a service process on the test's database and emulator, with a temporary
 * DATA_DIR removed after the test. `overrides` tune the worker.
 */
export async function serviceEnv(
  t: TestContext,
  parts: { db: TestDatabase; queue: EmbeddedQueue; keys: TestKeys },
  overrides: Record<string, string> = {},
): Promise<Record<string, string>> {
  const dataDir = await mkdtemp(join(tmpdir(), 'li-service-'))
  t.after(() => rm(dataDir, { recursive: true, force: true }))
  return {
    NODE_ENV: 'test',
    PORT: '0',
    LOG_LEVEL: 'info',
    DATA_DIR: dataDir,
    DATABASE_URL: parts.db.url,
    SQS_QUEUE_URL: parts.queue.queueUrl,
    AWS_ENDPOINT_URL: parts.queue.endpoint,
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    SQS_WAIT_TIME_SECONDS: '1',
    MASK_KEYS: parts.keys.MASK_KEYS,
    VAULT_MASTER_KEYS: parts.keys.VAULT_MASTER_KEYS,
    API_KEYS: testApiKeys().API_KEYS,
    ...overrides,
  }
}
