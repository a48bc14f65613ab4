import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { describeError } from '../db/errors.ts'
import { ProgressLog } from '../ingest/progress.ts'
import { SummaryRefresher } from '../logins/summary.ts'
import { IngestWorker, type WorkerOptions } from '../ingest/worker.ts'
import { applyRetention } from '../pii/erasure.ts'
import type { Services } from '../services.ts'

declare module 'fastify' {
  interface FastifyInstance {
    worker: IngestWorker
    /** folds the duplicates summary in the background (the worker's, and a read's when the backlog is large) */
    duplicatesSummary: SummaryRefresher
  }
}

/**
 * The SQS consumer, hosted by the app: it starts when the app is ready (unless disabled) and,
 * on close, stops polling and finishes the batches in flight before the pool is ended.
 */
export default fp(
  async function workerPlugin(
    app: FastifyInstance,
    options: { services: Services; enabled: boolean; worker: WorkerOptions; retentionDays: number | undefined; progressIntervalMs: number; duplicatesRefreshMs: number },
  ) {
    const { services } = options
    const worker = new IngestWorker(services.queue, services.pipeline, services.sql, app.log.child({ component: 'worker' }), options.worker)
    app.decorate('worker', worker)
    const progress = new ProgressLog(app.log.child({ component: 'worker' }), options.progressIntervalMs, () => services.queue.depth())
    worker.onBatch(progress.record)
    const summary = new SummaryRefresher(services.sql, app.log.child({ component: 'duplicates-summary' }), options.duplicatesRefreshMs)
    app.decorate('duplicatesSummary', summary)
    worker.onBatch((report) => { if (report.inserted > 0) summary.kick() })
    if (options.enabled) {
      app.addHook('onReady', async () => {
        progress.start()
        summary.fold() // what an earlier process, a rotation or an erasure left pending
        worker.start()
      })
    }
    app.addHook('preClose', async () => {
      await worker.stop()
      await progress.stop()
      await summary.stop()
    })

    const days = options.retentionDays
    if (options.enabled && days !== undefined) {
      // Retention runs beside the worker, hourly; it is idempotent, so replicas may overlap.
      const log = app.log.child({ component: 'retention' })
      const run = () => {
        applyRetention(services.sql, { days, dryRun: false })
          .then((report) => { if (report.data_keys > 0) log.info(report, 'retention: expired originals destroyed') })
          .catch((error: unknown) => log.warn({ err: describeError(error) }, 'retention run failed; will retry'))
      }
      let timer: NodeJS.Timeout | undefined
      app.addHook('onReady', async () => {
        run()
        timer = setInterval(run, 3_600_000).unref()
      })
      app.addHook('preClose', async () => clearInterval(timer))
    }
  },
  { name: 'worker' },
)
