import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { IngestWorker, type WorkerOptions } from '../ingest/worker.ts'
import type { Services } from '../services.ts'

declare module 'fastify' {
  interface FastifyInstance {
    worker: IngestWorker
  }
}

/**
 * The SQS consumer, hosted by the app: it starts when the app is ready (unless disabled) and,
 * on close, stops polling and finishes the batches in flight before the pool is ended.
 */
export default fp(
  async function workerPlugin(app: FastifyInstance, options: { services: Services; enabled: boolean; worker: WorkerOptions }) {
    const { services } = options
    const worker = new IngestWorker(services.queue, services.pipeline, services.sql, app.log.child({ component: 'worker' }), options.worker)
    app.decorate('worker', worker)
    if (options.enabled) app.addHook('onReady', async () => worker.start())
    app.addHook('preClose', async () => worker.stop())
  },
  { name: 'worker' },
)
