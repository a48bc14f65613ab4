import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { listDuplicates, type DuplicateField } from '../../src/logins/store.ts'
import { Cursor, Limit, authErrors, badRequest } from '../../src/schemas/common.ts'

const Duplicate = Type.Object({
  field: Type.Union([Type.Literal('ip'), Type.Literal('device_id')]),
  masked_value: Type.String(),
  count: Type.Integer({ description: 'rows with this masked value' }),
  users: Type.Integer({ description: 'distinct user_id among them' }),
})

const duplicates: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/logins/duplicates', {
    onRequest: app.requireScope('logins:read'),
    preHandler: app.apiRateLimit,
    schema: {
      tags: ['logins'],
      summary: 'Masked ips and device ids seen more than once',
      description: 'Most frequent first, then by field and value; paged with `next`.',
      security: [{ bearer: [] }],
      querystring: Type.Object(
        {
          field: Type.Union([Type.Literal('ip'), Type.Literal('device_id'), Type.Literal('all')], { default: 'all', examples: ['ip'] }),
          min_count: Type.Integer({ minimum: 2, maximum: 1_000_000, default: 2, description: 'least number of rows', examples: [2] }),
          limit: Limit,
          cursor: Type.Optional(Cursor),
        },
        { additionalProperties: false },
      ),
      response: {
        200: Type.Object({ items: Type.Array(Duplicate), next: Type.Union([Type.String(), Type.Null()]) }),
        ...authErrors,
      },
    },
  }, async (request, reply) => {
    const { field, min_count, limit, cursor } = request.query
    const fields: DuplicateField[] = field === 'all' ? ['device_id', 'ip'] : [field]
    let after
    if (cursor !== undefined) {
      const values = app.cursors.decode('duplicates', cursor)
      const [count, cursorField, maskedValue] = values ?? []
      if (typeof count !== 'number' || (cursorField !== 'ip' && cursorField !== 'device_id') || typeof maskedValue !== 'string') {
        return reply.code(400).send(badRequest('querystring/cursor is not a cursor this API issued for /logins/duplicates'))
      }
      after = { count, field: cursorField as DuplicateField, masked_value: maskedValue }
    }
    const rows = await app.dbRead(listDuplicates(app.services.sql, { fields, minCount: min_count, limit, ...(after ? { after } : {}) }))
    const items = rows.slice(0, limit)
    const last = items.at(-1)
    const next = rows.length > limit && last ? app.cursors.encode('duplicates', [last.count, last.field, last.masked_value]) : null
    return { items, next }
  })
}

export default duplicates
