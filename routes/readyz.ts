import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { checkDatabase } from '../src/readiness.ts'
import { Nullable } from '../src/schemas/common.ts'

const Check = Type.Object({ ok: Type.Boolean(), detail: Type.Optional(Type.String()) })
const Readiness = Type.Object({
  status: Type.Union([Type.Literal('ready'), Type.Literal('not ready')]),
  failing: Type.Array(Type.String(), { description: 'names of the failing checks' }),
  checks: Type.Object({ database: Check, migrations: Check }),
  queue: Type.Object(
    {
      status: Type.String(),
      pollers: Type.Integer(),
      batchesInFlight: Type.Integer(),
      lastPollAt: Nullable(Type.String()),
      lastSuccessfulPollAt: Nullable(Type.String()),
      lastError: Nullable(Type.Object({ at: Type.String(), dependency: Type.String(), error: Type.Record(Type.String(), Type.String()) })),
    },
    { description: 'state of the ingestion worker; informative only, an unreachable queue does not make the API unready' },
  ),
})

/** Readiness: the database answers and has this code's migrations. Every check gives up within a second. */
const readyz: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/readyz', {
    schema: {
      operationId: 'getReadiness',
      tags: ['operations'],
      summary: 'Readiness probe',
      description: '200 when the database answers and migrations are applied; 503 naming the failing check otherwise. Answers within a second.',
      response: { 200: Readiness, 503: Readiness },
    },
  }, async (_request, reply) => {
    const { database, migrations } = await checkDatabase(app.services.sql, app.services.schemaVersion, 1000)
    const failing = [...(database.ok ? [] : ['database']), ...(migrations.ok ? [] : ['migrations'])]
    return reply.code(failing.length === 0 ? 200 : 503).send({
      status: failing.length === 0 ? 'ready' : 'not ready',
      failing,
      checks: { database, migrations },
      queue: app.worker.state(),
    })
  })
}

export default readyz
