import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { REASON_HEADER, audited, auditSuccess, type AuditTarget } from '../../src/audit/hooks.ts'
import { isUnavailableError } from '../../src/db/errors.ts'
import { sendError } from '../../src/http/errors.ts'
import { ResubmitFailedError, resubmitRejected } from '../../src/ingest/rejected.ts'
import { parseId } from '../../src/logins/cursor.ts'
import { authErrors } from '../../src/schemas/common.ts'

const AUDIT: AuditTarget = {
  action: 'rejected.resubmit',
  target: (request) => {
    const ids = (request.body as { ids?: unknown } | undefined)?.ids
    return Array.isArray(ids) ? ids.filter((id) => typeof id === 'string').join(',').slice(0, 128) : null
  },
}

const hooks = audited(AUDIT)

const resubmit: FastifyPluginAsyncTypebox = async (app) => {
  app.post('/rejected/resubmit', {
    ...app.apiAccess('rejected:resubmit'),
    onSend: hooks.onSend,
    preValidation: [
      hooks.preValidation,
      // `curl -X POST` with no body means all defaults.
      async (request) => {
        request.body ??= {} as typeof request.body
      },
    ],
    schema: {
      operationId: 'resubmitRejected',
      tags: ['ingestion'],
      summary: 'Send rejected messages back to the queue after a fix (audited)',
      description:
        'Decrypts the bodies of pending rejections (oldest first, or the given ids) inside the service and sends each ' +
        'back to the queue it was read from, marking it resubmitted in the same transaction: a rejection is never sent ' +
        `twice. Bodies whose data key was erased or expired are counted as unreadable. Audited (action rejected.resubmit), ` +
        `with the reason in \`${REASON_HEADER}\` when given. A queue or database that fails answers 503; what was sent before stays marked.`,
      querystring: Type.Object({}, { additionalProperties: false }),
      headers: Type.Object({
        [REASON_HEADER]: Type.Optional(Type.String({ minLength: 5, maxLength: 500, description: 'why (e.g. the fix deployed)', examples: ['INC-7 locale limit fixed'] })),
      }),
      body: Type.Object(
        {
          ids: Type.Optional(Type.Array(Type.String({ pattern: '^[1-9][0-9]{0,18}$' }), { minItems: 1, maxItems: 1000, description: 'only these rejection ids' })),
          limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100, description: 'at most this many' }),
          dryRun: Type.Boolean({ default: false, description: 'count what would be sent, send nothing' }),
        },
        { additionalProperties: false, examples: [{ limit: 10, dryRun: true }] },
      ),
      response: {
        200: Type.Object({
          resubmitted: Type.Integer({ description: 'sent back to the queue (or, on a dry run, that would be)' }),
          unreadable: Type.Integer({ description: 'bodies whose data key was erased or expired: nothing left to send' }),
          dryRun: Type.Boolean(),
        }),
        ...authErrors,
      },
    },
  }, async (request, reply) => {
    const ids = request.body.ids?.map((text) => parseId(text))
    if (ids?.some((id) => id === null)) return sendError(reply, 400, 'body/ids must be rejection ids')
    // Audited before anything is decrypted or sent: no audit row, no resubmission.
    await auditSuccess(app.services.sql, request, 200, AUDIT)
    try {
      return await resubmitRejected(app.services.sql, app.services.vault, app.services.queue.client, {
        queueUrl: app.services.queue.url,
        limit: request.body.limit,
        dryRun: request.body.dryRun,
        ...(ids === undefined ? {} : { ids: ids as bigint[] }),
      })
    } catch (error) {
      if (!(error instanceof ResubmitFailedError)) throw error
      // A second audit row records the failure; what was sent before is marked and stays so.
      request.audited = false
      const dependency = isUnavailableError(error.cause) ? 'database' : 'queue or the database'
      return sendError(reply, 503, `the ${dependency} failed; resubmitted before the failure: ${error.partial.resubmitted} (they are marked and will not be sent again)`)
    }
  })
}

export default resubmit
