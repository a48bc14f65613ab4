import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { AUDIT_UNAVAILABLE, REASON_HEADER, audited, auditSuccess, type AuditTarget } from '../../../src/audit/hooks.ts'
import { describeError } from '../../../src/db/errors.ts'
import { parseId } from '../../../src/logins/cursor.ts'
import { readOriginals } from '../../../src/logins/store.ts'
import { sendError } from '../../../src/http/errors.ts'
import { authErrors, errorRef } from '../../../src/schemas/common.ts'

const AUDIT: AuditTarget = {
  action: 'pii.read',
  target: (request) => (request.params as { id?: string } | undefined)?.id ?? null,
}

const pii: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/logins/:id/pii', {
    ...app.apiAccess('pii:read'),
    ...audited(AUDIT),
    schema: {
      operationId: 'getLoginPii',
      tags: ['pii'],
      summary: 'The original ip and device_id of one row (audited)',
      description:
        `Needs the \`pii:read\` scope and a stated reason in the \`${REASON_HEADER}\` header (5-500 characters, e.g. a ticket ` +
        'number). Every call, allowed or refused, is written to the audit log before the answer is sent; if that write fails, ' +
        'no PII is returned (503). 404: no such row, or a row that predates the service and has no stored originals. ' +
        '410: the originals were erased or expired. Never cached.',
      // no query parameters: an unknown one is refused like everywhere else
      querystring: Type.Object({}, { additionalProperties: false }),
      params: Type.Object({ id: Type.String({ pattern: '^[1-9][0-9]{0,18}$', description: 'row id', examples: ['1'] }) }),
      headers: Type.Object({
        [REASON_HEADER]: Type.String({ minLength: 5, maxLength: 500, description: 'why the originals are needed', examples: ['SEC-1234 fraud review'] }),
      }),
      response: {
        200: Type.Object({ id: Type.String(), ip: Type.String(), device_id: Type.String() }),
        ...authErrors,
        404: errorRef,
        410: errorRef,
      },
    },
  }, async (request, reply) => {
    reply.header('cache-control', 'no-store')
    const id = parseId(request.params.id)
    if (id === null) return sendError(reply, 400, 'params/id must be a row id between 1 and 2^63-1')
    const found = await app.dbRead(readOriginals(app.services.sql, app.services.vault, id))
    const status = found.status === 'found' ? 200 : found.status === 'erased' ? 410 : 404
    try {
      await auditSuccess(app.services.sql, request, status, AUDIT)
    } catch (error) {
      request.log.error({ err: describeError(error) }, 'audit write failed; PII withheld')
      return sendError(reply, 503, AUDIT_UNAVAILABLE)
    }
    if (found.status === 'found') return { id: id.toString(), ip: found.ip, device_id: found.device_id }
    if (found.status === 'erased') return sendError(reply, 410, `the originals of row ${id} were erased or expired`)
    return sendError(reply, 404, found.status === 'no-row' ? `no login with id ${id}` : `row ${id} has no stored originals (it predates the service)`)
  })
}

export default pii
