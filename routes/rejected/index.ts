import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { pageRejected } from '../../src/ingest/rejected.ts'
import { Cursor, Limit, NextCursor, Nullable, authErrors } from '../../src/schemas/common.ts'

const Timestamp = Type.String({ format: 'date-time' })

const RejectedRecord = Type.Object({
  id: Type.String({ description: 'rejection id (for POST /rejected/resubmit)' }),
  message_id: Type.String({ description: 'SQS message id of the rejected message' }),
  reason: Type.String({ description: 'the field and the rule it broke, never the value' }),
  receive_count: Nullable(Type.Integer(), { description: 'SQS receive count when it was rejected' }),
  rejected_at: Timestamp,
  resubmitted_at: Nullable(Timestamp, { description: 'when it was sent back to the queue; null while pending' }),
})

const rejected: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/rejected', {
    ...app.apiAccess('rejected:read'),
    schema: {
      operationId: 'listRejected',
      tags: ['ingestion'],
      summary: 'Rejected messages, newest first (never their bodies)',
      description:
        'Messages that could not become a row, with the reason. Their bodies may hold PII and stay encrypted in the ' +
        'database; after a fix, POST /rejected/resubmit sends them back to the queue.',
      querystring: Type.Object(
        {
          limit: Limit,
          cursor: Type.Optional(Cursor),
          state: Type.Union([Type.Literal('pending'), Type.Literal('resubmitted'), Type.Literal('all')], {
            default: 'all',
            description: 'pending: not resubmitted yet',
            examples: ['pending'],
          }),
        },
        { additionalProperties: false },
      ),
      response: { 200: Type.Object({ items: Type.Array(RejectedRecord), next: NextCursor }), ...authErrors },
    },
  }, async (request) => {
    const { limit, cursor, state } = request.query
    const before = app.services.cursors.rejected.read(cursor, (after) => after.state === state)?.before
    const page = await app.dbRead(pageRejected(app.services.sql, { limit, state, ...(before === undefined ? {} : { before }) }))
    return { items: page.items, next: page.lastId === null ? null : app.services.cursors.rejected.encode({ id: page.lastId, state }) }
  })
}

export default rejected
