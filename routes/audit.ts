import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { listAudit } from '../src/audit/store.ts'
import { Cursor, Limit, NextCursor, Nullable, authErrors } from '../src/schemas/common.ts'

const AuditRecord = Type.Object({
  id: Type.String(),
  at: Type.String({ format: 'date-time' }),
  action: Type.String({ description: 'pii.read, pii.erase or rejected.resubmit' }),
  key_name: Nullable(Type.String(), { description: 'name of the API key; null when none was recognised' }),
  target: Nullable(Type.String(), { description: 'row id (pii.read), user id (pii.erase) or rejection ids (rejected.resubmit) as requested' }),
  reason: Nullable(Type.String()),
  status: Type.Integer({ description: 'HTTP status of the answer' }),
  outcome: Type.String(),
  request_id: Nullable(Type.String()),
  calls: Type.Integer({ description: 'calls the row stands for: 1, or the count of refusals beyond the audit rate in one window' }),
  first_at: Nullable(Type.String({ format: 'date-time' }), { description: 'first call of a summary row (its last is `at`)' }),
  note: Nullable(Type.String(), { description: 'how input that could not be stored as sent was stored (escaped, truncated), or a summary' }),
})

const audit: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/audit', {
    ...app.apiAccess('audit:read'),
    schema: {
      operationId: 'listAuditEvents',
      tags: ['pii'],
      summary: 'The PII audit log, newest first',
      description: 'Every call of the PII routes and of POST /rejected/resubmit, allowed or refused; refusals beyond a rate are summarised as one row per window with their count (`calls`). The log is append-only in the database.',
      querystring: Type.Object(
        {
          limit: Limit,
          cursor: Type.Optional(Cursor),
          action: Type.Optional(Type.Union([Type.Literal('pii.read'), Type.Literal('pii.erase'), Type.Literal('rejected.resubmit')], { examples: ['pii.read'] })),
          key_name: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
        },
        { additionalProperties: false },
      ),
      response: { 200: Type.Object({ items: Type.Array(AuditRecord), next: NextCursor }), ...authErrors },
    },
  }, async (request) => {
    const { limit, cursor, action, key_name } = request.query
    const before = app.services.cursors.audit.read(cursor)
    const page = await app.dbRead(listAudit(app.services.sql, {
      limit,
      ...(before === undefined ? {} : { before }),
      ...(action === undefined ? {} : { action }),
      ...(key_name === undefined ? {} : { keyName: key_name }),
    }))
    return { items: page.items, next: page.lastId === null ? null : app.services.cursors.audit.encode(page.lastId) }
  })
}

export default audit
