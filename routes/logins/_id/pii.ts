import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { writeAudit } from '../../../src/audit/store.ts'
import { describeError } from '../../../src/ingest/errors.ts'
import { parseId } from '../../../src/logins/cursor.ts'
import { readOriginals } from '../../../src/logins/store.ts'
import { authErrors, badRequest, errorRef } from '../../../src/schemas/common.ts'

declare module 'fastify' {
  interface FastifyRequest {
    audited?: boolean
  }
}

const OUTCOMES: Record<number, string> = {
  200: 'disclosed', 400: 'bad-request', 401: 'unauthenticated', 403: 'forbidden', 404: 'not-found',
  410: 'erased', 429: 'rate-limited', 503: 'audit-unavailable',
}

export const REASON_HEADER = 'x-access-reason'

const pii: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/logins/:id/pii', {
    onRequest: app.requireScope('pii:read'),
    config: { rateLimit: app.apiRateLimit },
    schema: {
      tags: ['pii'],
      summary: 'The original ip and device_id of one row (audited)',
      description:
        `Needs the \`pii:read\` scope and a stated reason in the \`${REASON_HEADER}\` header (5-500 characters, e.g. a ticket ` +
        'number). Every call, allowed or refused, is written to the audit log before the answer is sent; if that write fails, ' +
        'no PII is returned (503). 404: no such row, or a row that predates the service and has no stored originals. ' +
        '410: the originals were erased. Never cached.',
      security: [{ bearer: [] }],
      params: Type.Object({ id: Type.String({ pattern: '^[1-9][0-9]{0,18}$', description: 'row id', examples: ['1'] }) }),
      headers: Type.Object({
        [REASON_HEADER]: Type.String({ minLength: 5, maxLength: 500, description: 'why the originals are needed', examples: ['SEC-1234 fraud review'] }),
      }),
      response: {
        200: Type.Object({ id: Type.String(), ip: Type.String(), device_id: Type.String() }),
        ...authErrors,
        404: errorRef,
        410: errorRef,
        503: errorRef,
      },
    },
    // Refusals (401, 403, 400, 429) are audited here, before their answer leaves.
    onSend: async (request, reply, payload) => {
      if (request.audited !== true) {
        request.audited = true
        const rawReason = request.headers[REASON_HEADER]
        // A refusal carries no PII, so a failed audit write is logged rather than turned into another error.
        await writeAudit(app.services.sql, {
          action: 'pii.read',
          keyName: request.apiKey?.name ?? null,
          target: (request.params as { id?: string } | undefined)?.id?.slice(0, 40) ?? null,
          reason: typeof rawReason === 'string' ? rawReason.slice(0, 500) : null,
          status: reply.statusCode,
          outcome: OUTCOMES[reply.statusCode] ?? 'error',
          requestId: request.id,
        }).catch((error: unknown) => request.log.error({ err: describeError(error), status: reply.statusCode }, 'could not audit a refused PII call'))
      }
      return payload
    },
  }, async (request, reply) => {
    reply.header('cache-control', 'no-store')
    const id = parseId(request.params.id)
    if (id === null) return reply.code(400).send(badRequest('params/id must be a row id between 1 and 2^63-1'))
    const found = await readOriginals(app.services.sql, app.services.vault, id)
    const status = found.status === 'found' ? 200 : found.status === 'erased' ? 410 : 404
    try {
      await writeAudit(app.services.sql, {
        action: 'pii.read',
        keyName: request.apiKey?.name ?? null,
        target: id.toString(),
        reason: request.headers[REASON_HEADER],
        status,
        outcome: OUTCOMES[status] ?? 'error',
        requestId: request.id,
      })
      request.audited = true
    } catch (error) {
      request.log.error({ err: describeError(error) }, 'audit write failed; PII withheld')
      request.audited = true
      return reply.code(503).send({ statusCode: 503, error: 'Service Unavailable', message: 'the audit log could not be written, so no PII is returned; try again later' })
    }
    if (found.status === 'found') return { id: id.toString(), ip: found.ip, device_id: found.device_id }
    if (found.status === 'erased') return reply.code(410).send({ statusCode: 410, error: 'Gone', message: `the originals of row ${id} were erased` })
    return reply.code(404).send({
      statusCode: 404,
      error: 'Not Found',
      message: found.status === 'no-row' ? `no login with id ${id}` : `row ${id} has no stored originals (it predates the service)`,
    })
  })
}

export default pii
