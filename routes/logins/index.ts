import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { decodeCursor, encodeCursor } from '../../src/logins/cursor.ts'
import { listLogins } from '../../src/logins/store.ts'
import { authErrors } from '../../src/schemas/common.ts'

const logins: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/logins', {
    preHandler: app.requireScope('logins:read'),
    schema: {
      tags: ['logins'],
      summary: 'List masked logins, newest first',
      description: 'Keyset-paged by id. Never returns the original ip or device_id.',
      security: [{ bearer: [] }],
      querystring: Type.Object(
        {
          limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100, description: 'page size' }),
          cursor: Type.Optional(Type.String({ maxLength: 64, description: 'the `next` value of the previous page' })),
        },
        { additionalProperties: false },
      ),
      response: { 200: Type.Ref('LoginPage'), ...authErrors },
    },
  }, async (request, reply) => {
    const { limit, cursor } = request.query
    const before = cursor === undefined ? undefined : decodeCursor(cursor)
    if (before === null) return reply.code(400).send({ statusCode: 400, error: 'Bad Request', message: 'querystring/cursor is not a cursor this API issued' })
    const page = await listLogins(app.services.sql, { limit, ...(before === undefined ? {} : { before }) })
    return { items: page.items, next: page.lastId === null ? null : encodeCursor(page.lastId) }
  })
}

export default logins
