import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { sendError } from '../src/http/errors.ts'
import { DrainBusyError, DrainFailedError, drainQueue } from '../src/ingest/drain.ts'
import { authErrors, errorRef } from '../src/schemas/common.ts'

const DrainReport = Type.Object({
  received: Type.Integer({ description: 'messages received from the queue' }),
  inserted: Type.Integer({ description: 'new rows in user_logins' }),
  duplicates: Type.Integer({ description: 'messages already stored by an earlier delivery' }),
  rejected: Type.Integer({ description: 'new rejection records (invalid messages)' }),
  deleted: Type.Integer({ description: 'messages deleted from the queue after their commit' }),
  deleteFailures: Type.Integer({ description: 'stored messages SQS did not delete; they come back as duplicates' }),
  durationMs: Type.Integer(),
  stoppedBy: Type.Union([Type.Literal('empty'), Type.Literal('maxMessages'), Type.Literal('maxSeconds'), Type.Literal('shutdown')]),
})

const ingest: FastifyPluginAsyncTypebox = async (app) => {
  app.post('/ingest', {
    ...app.apiAccess('ingest:run'),
    // A scheduler's `curl -X POST` sends no body: treat it as {} (all defaults). A JSON `null` is a body, and refused.
    preValidation: async (request) => {
      if (request.body === undefined) request.body = {} as typeof request.body
    },
    schema: {
      operationId: 'runIngest',
      tags: ['ingestion'],
      summary: 'Drain the queue now (for schedulers)',
      description:
        'Receives and stores messages until the queue answers empty or a limit is reached, and reports the counts. ' +
        'One drain runs at a time across all replicas (a lease in the database): a second call gets 409. ' +
        'Works with the background worker on or off. A failing database or queue answers 503; what was stored before stays stored.',
      // no query parameters: an unknown one is refused like everywhere else
      querystring: Type.Object({}, { additionalProperties: false }),
      body: Type.Object(
        {
          maxMessages: Type.Integer({ minimum: 1, maximum: 1_000_000, default: 10_000, description: 'stop after this many messages' }),
          maxSeconds: Type.Integer({ minimum: 1, maximum: 300, default: 25, description: 'stop receiving after this many seconds' }),
        },
        { additionalProperties: false, examples: [{ maxMessages: 1000, maxSeconds: 20 }] },
      ),
      response: { 200: DrainReport, ...authErrors, 409: errorRef, 503: errorRef },
    },
  }, async (request, reply) => {
    try {
      return await drainQueue(
        {
          sql: app.services.sql,
          queue: app.services.queue,
          batches: app.worker.batches,
          concurrency: app.workerOptions.concurrency,
          visibilityTimeoutSeconds: app.workerOptions.visibilityTimeoutSeconds,
        },
        request.body,
        app.closing,
      )
    } catch (error) {
      if (error instanceof DrainBusyError) return sendError(reply, 409, error.message)
      if (error instanceof DrainFailedError) {
        const p = error.partial
        return sendError(reply, 503, `the ${error.dependency} is unavailable; unstored messages stay on the queue (stored before the failure: ${p.inserted} inserted, ${p.rejected} rejected, ${p.duplicates} duplicates)`)
      }
      throw error
    }
  })
}

export default ingest
