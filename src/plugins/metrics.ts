import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import { Type } from 'typebox'
import type { LoginQueue } from '../ingest/queue.ts'

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Registry
  }
}

/**
 * Prometheus metrics of the pipeline and the API, in a registry of the app's own (tests build
 * many apps in one process). Labels are bounded: route templates, methods, status codes and
 * fixed outcome names; never a value from a message or a query string.
 */
export default fp(
  async function metricsPlugin(app: FastifyInstance) {
    const registry = new Registry()
    collectDefaultMetrics({ register: registry })
    app.decorate('metrics', registry)

    const messages = new Counter({
      name: 'login_ingest_messages_total',
      help: 'SQS messages by what became of them',
      labelNames: ['outcome'] as const,
      registers: [registry],
    })
    for (const outcome of ['received', 'inserted', 'duplicate', 'rejected', 'deleted', 'delete_failed']) messages.inc({ outcome }, 0)
    const batchDuration = new Histogram({
      name: 'login_ingest_batch_duration_seconds',
      help: 'time to store (one transaction) and delete one batch: the worker stores the batches of several receives together',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    })
    const failures = new Counter({
      name: 'login_ingest_dependency_failures_total',
      help: 'receive or store attempts that failed because the queue or the database was unavailable',
      labelNames: ['dependency'] as const,
      registers: [registry],
    })
    for (const dependency of ['queue', 'database']) failures.inc({ dependency }, 0)

    const worker = app.worker
    worker.onBatch((report) => {
      messages.inc({ outcome: 'received' }, report.received)
      messages.inc({ outcome: 'inserted' }, report.inserted)
      messages.inc({ outcome: 'duplicate' }, report.duplicates)
      messages.inc({ outcome: 'rejected' }, report.rejected)
      messages.inc({ outcome: 'deleted' }, report.deleted)
      messages.inc({ outcome: 'delete_failed' }, report.deleteFailures)
      batchDuration.observe(report.durationMs / 1000)
    })
    worker.onFailure((dependency) => failures.inc({ dependency }))
    new Gauge({
      name: 'login_ingest_seconds_since_last_successful_poll',
      help: 'seconds since a receive from SQS last succeeded (-1 before the first)',
      registers: [registry],
      collect() {
        const last = worker.state().lastSuccessfulPollAt
        this.set(last === null ? -1 : (Date.now() - Date.parse(last)) / 1000)
      },
    })
    new Gauge({
      name: 'login_ingest_batches_in_flight',
      help: 'batches being stored right now',
      registers: [registry],
      collect() {
        this.set(worker.state().batchesInFlight)
      },
    })

    const { queue, dlq } = app.services
    const watched: [string, LoginQueue][] = [['main', queue], ...(dlq === null ? [] : [['dlq', dlq] as [string, LoginQueue]])]
    new Gauge({
      name: 'login_ingest_queue_messages',
      help: 'approximate messages in the queue and its dead-letter queue, read from SQS at scrape time',
      labelNames: ['queue', 'state'] as const,
      registers: [registry],
      async collect() {
        // A slow or unreachable SQS must not stall the scrape: give up after a second and leave the last values.
        await Promise.all(watched.map(async ([name, q]) => {
          try {
            const depth = await q.depth(AbortSignal.timeout(1000))
            this.set({ queue: name, state: 'visible' }, depth.visible)
            this.set({ queue: name, state: 'in_flight' }, depth.inFlight)
          } catch {
            // keep the previous values; dependency failures are counted by the worker
          }
        }))
      },
    })

    new Gauge({
      name: 'login_ingest_mask_rotation_rows',
      help: 'progress of a running mask key rotation: rows re-masked, and rows kept as they were for lack of originals (0 when none runs)',
      labelNames: ['result'] as const,
      registers: [registry],
      async collect() {
        const rows = await Promise.race([
          app.services.sql<{ value: { remasked: number; withoutOriginals: number } }[]>`
            SELECT value FROM service_state WHERE name = 'mask-rotation-progress'`.catch(() => null),
          new Promise<null>((resolve) => setTimeout(resolve, 1000, null).unref()),
        ])
        if (rows === null) return
        this.set({ result: 'remasked' }, rows[0]?.value.remasked ?? 0)
        this.set({ result: 'without_originals' }, rows[0]?.value.withoutOriginals ?? 0)
      },
    })

    const http = new Histogram({
      name: 'http_request_duration_seconds',
      help: 'HTTP request duration by route template',
      labelNames: ['method', 'route', 'status_code'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    })
    app.addHook('onResponse', async (request, reply) => {
      // Unmatched URLs share one label so a scanner cannot grow the series without bound.
      const route = request.routeOptions.url ?? '__unmatched__'
      if (route === '/metrics') return
      http.observe({ method: request.method, route, status_code: String(reply.statusCode) }, reply.elapsedTime / 1000)
    })

    app.get('/metrics', {
      schema: {
        operationId: 'getMetrics',
        tags: ['operations'],
        summary: 'Prometheus metrics',
        description: 'Text exposition format: pipeline counters, batch durations, dependency failures, HTTP request histograms.',
        response: { 200: { description: 'the metrics', content: { 'text/plain; version=0.0.4': { schema: Type.String() } } } },
      },
    }, async (_request, reply) => {
      reply.type(registry.contentType)
      return registry.metrics()
    })
  },
  { name: 'metrics', dependencies: ['worker'] },
)
