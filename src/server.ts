import closeWithGrace from 'close-with-grace'
import pino from 'pino'
import { buildApp, loggerOptions } from './app.ts'
import { ConfigError, loadConfig, type Config } from './config.ts'
import { KeyMismatchError } from './pii/key-registry.ts'
import { startServices, type RunningServices } from './services.ts'

let config: Config
try {
  config = loadConfig()
} catch (error) {
  if (!(error instanceof ConfigError)) throw error
  console.error(`login-ingest: invalid configuration: ${error.message}`)
  process.exit(1)
}

const log = pino(loggerOptions(config) as pino.LoggerOptions)

/** Stops with one line a user can act on; what started is closed first (the DATA_DIR lock released). */
async function refuse(message: string, running?: RunningServices): Promise<never> {
  await running?.close()
  log.flush()
  console.error(`login-ingest: cannot start: ${message}`)
  process.exit(1)
}

let services: RunningServices
try {
  services = await startServices(config, log)
} catch (error) {
  const locked = (error as { code?: unknown }).code === 'DATA_DIR_LOCKED' // embedded/data-dir.ts, loaded only when DATA_DIR is used
  if (error instanceof ConfigError || error instanceof KeyMismatchError || locked) {
    await refuse((error as Error).message)
  }
  log.fatal({ err: error }, 'could not start the service')
  process.exit(1)
}

const running = services
const app = await buildApp({ config, services, logger: log })
const embedded = services.embedded.database || services.embedded.queue !== null || services.embedded.demoApiKey !== null
closeWithGrace({ delay: config.SHUTDOWN_GRACE_MS, logger: log }, async ({ signal, err }) => {
  if (err) log.error({ err }, 'shutting down after an error')
  else log.info({ signal }, 'shutting down: no new work, finishing batches in flight')
  if (embedded) await (await import('./embedded/data-dir.ts')).removeRuntimeInfo(config.DATA_DIR)
  await app.close()
  await running.close()
})

let address: string
try {
  address = await app.listen({ port: config.PORT, host: config.HOST })
} catch (error) {
  const code = (error as NodeJS.ErrnoException).code
  if (code !== 'EADDRINUSE' && code !== 'EADDRNOTAVAIL' && code !== 'EACCES') throw error
  await app.close()
  const problem = code === 'EADDRINUSE' ? 'is taken (is another login-ingest running?)' : code === 'EACCES' ? 'is not allowed' : 'is not an address of this machine'
  await refuse(`${config.HOST}:${config.PORT} ${problem}; set PORT (or HOST) to another value`, running)
  throw error
}
log.info({ address, docs: `${address}/docs` }, 'login-ingest listening')

if (embedded) {
  const { writeRuntimeInfo } = await import('./embedded/data-dir.ts')
  await writeRuntimeInfo(config.DATA_DIR, {
    pid: process.pid,
    startedAt: new Date().toISOString(),
    api: address.replace('://localhost', '://127.0.0.1'),
    queue: services.embedded.queue === null
      ? null
      : { endpoint: services.embedded.queue.endpoint, queueUrl: services.embedded.queue.queueUrl, dlqUrl: services.embedded.queue.dlqUrl, localstackUrl: services.embedded.queue.localstackUrl },
    embeddedDatabase: services.embedded.database,
  })
}
if (services.embedded.demoApiKey !== null || services.embedded.queue !== null) process.stderr.write(banner(address, services.embedded))

/** What a newcomer needs on the console (not the log stream: it holds a secret, for local demos only). */
function banner(api: string, parts: RunningServices['embedded']): string {
  const lines = ['', `  login-ingest is up at ${api}   (Swagger UI: ${api}/docs)`]
  if (parts.demoApiKey !== null) {
    lines.push(
      `  demo API key (all scopes, from ${config.DATA_DIR}/secrets.json):`,
      `    ${parts.demoApiKey}`,
      `  try:  curl -H "Authorization: Bearer ${parts.demoApiKey}" '${api}/logins?limit=5'`,
    )
  }
  const queue = parts.queue
  if (queue !== null) {
    const port = new URL(queue.localstackUrl).port
    lines.push(
      '',
      `  embedded SQS queue (in memory, loopback only): http://localhost:${port}`,
      `    queue URL: ${queue.localstackUrl}`,
    )
    if (queue.portTaken) {
      lines.push(`    NOTE: port ${config.EMBEDDED_QUEUE_PORT} is taken by something else (a LocalStack?): localhost:${config.EMBEDDED_QUEUE_PORT} is NOT this service's queue`)
    }
    lines.push(
      '  see duplicates: send logins that repeat ip and device_id values, then ask for them:',
      '    npm run send -- --generate 200 --repeat 0.3',
      `    curl -H "Authorization: Bearer ${parts.demoApiKey ?? '<key>'}" '${api}/logins/duplicates'`,
      `  or the exercise's own: aws --endpoint-url http://localhost:${port} sqs send-message --queue-url ${queue.localstackUrl} --message-body '{...}'`,
    )
  }
  return `${lines.join('\n')}\n\n`
}
