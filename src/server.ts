import closeWithGrace from 'close-with-grace'
import pino from 'pino'
import { buildApp, loggerOptions } from './app.ts'
import { ConfigError, loadConfig, type Config } from './config.ts'
import { KeyMismatchError } from './pii/key-registry.ts'
import { startServices } from './services.ts'

let config: Config
try {
  config = loadConfig()
} catch (error) {
  if (!(error instanceof ConfigError)) throw error
  console.error(`login-ingest: invalid configuration: ${error.message}`)
  process.exit(1)
}

const log = pino(loggerOptions(config) as pino.LoggerOptions)
let services
try {
  services = await startServices(config, log)
} catch (error) {
  if (error instanceof ConfigError || error instanceof KeyMismatchError) {
    log.flush()
    console.error(`login-ingest: cannot start: ${error.message}`)
    process.exit(1)
  }
  log.fatal({ err: error }, 'could not start the service')
  process.exit(1)
}

const app = await buildApp({ config, services, logger: log })
const running = services
closeWithGrace({ delay: config.SHUTDOWN_GRACE_MS, logger: log }, async ({ signal, err }) => {
  if (err) log.error({ err }, 'shutting down after an error')
  else log.info({ signal }, 'shutting down: no new work, finishing batches in flight')
  await app.close()
  await running.close()
})

const address = await app.listen({ port: config.PORT, host: config.HOST })
log.info({ address, docs: `${address}/docs` }, 'login-ingest listening')
if (services.embedded.database || services.embedded.queue !== null) {
  // Where the CLIs reach this process (PGlite serves only it); minimal until the lead's version lands.
  const { writeRuntimeInfo } = await import('./embedded/data-dir.ts')
  const queue = services.embedded.queue
  await writeRuntimeInfo(config.DATA_DIR, {
    pid: process.pid,
    startedAt: new Date().toISOString(),
    api: address.replace('://localhost', '://127.0.0.1'),
    queue: queue === null ? null : { endpoint: queue.endpoint, queueUrl: queue.queueUrl, dlqUrl: queue.dlqUrl, localstackUrl: queue.localstackUrl },
    embeddedDatabase: services.embedded.database,
  })
}
if (services.embedded.demoApiKey !== null) {
  // Printed to the console, not to the log stream: it is a secret, and only for local demos.
  process.stderr.write(
    `\n  login-ingest is up at ${address}  (Swagger UI: ${address}/docs)\n` +
    `  demo API key (all scopes, from ${config.DATA_DIR}/secrets.json):\n    ${services.embedded.demoApiKey}\n` +
    `  try: curl -H "Authorization: Bearer ${services.embedded.demoApiKey}" ${address}/logins\n\n`,
  )
}
