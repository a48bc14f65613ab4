import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { REASON_HEADER, audited, auditSuccess, type AuditTarget } from '../../../src/audit/hooks.ts'
import { describeError } from '../../../src/db/errors.ts'
import { sendError } from '../../../src/http/errors.ts'
import { eraseUserPii } from '../../../src/pii/erasure.ts'
import { authErrors } from '../../../src/schemas/common.ts'

const AUDIT: AuditTarget = {
  action: 'pii.erase',
  target: (request) => (request.params as { user_id?: string } | undefined)?.user_id ?? null,
}

const erase: FastifyPluginAsyncTypebox = async (app) => {
  app.delete('/users/:user_id/pii', {
    ...app.apiAccess('pii:erase'),
    ...audited(AUDIT),
    schema: {
      operationId: 'eraseUserPii',
      tags: ['pii'],
      summary: "Erase one user's originals for good (crypto-shredding, audited)",
      description:
        `Needs the \`pii:erase\` scope and a reason in \`${REASON_HEADER}\`. Destroys the user's data keys and wipes the ` +
        'ciphertexts under them, so their original ip and device_id (and their rejected bodies) can never be decrypted again; ' +
        'GET /logins/{id}/pii then answers 410 for their rows. The masked rows stay as pseudonymous analytics unless ' +
        '`rows=delete`. Erasing twice is harmless (the counts are then zero). Audited like the PII route.',
      params: Type.Object({ user_id: Type.String({ minLength: 1, maxLength: 128, examples: ['424cdd21-063a-43a7-b91b-7ca1a833afae'] }) }),
      querystring: Type.Object(
        { rows: Type.Union([Type.Literal('keep'), Type.Literal('delete')], { default: 'keep', description: 'also delete the masked rows' }) },
        { additionalProperties: false },
      ),
      headers: Type.Object({
        [REASON_HEADER]: Type.String({ minLength: 5, maxLength: 500, description: 'why (e.g. the erasure request number)', examples: ['DSR-2026-0042 erasure request'] }),
      }),
      response: {
        200: Type.Object({
          user_id: Type.String(),
          data_keys_destroyed: Type.Integer(),
          originals_erased: Type.Integer({ description: 'logins whose originals were wiped' }),
          rejected_bodies_erased: Type.Integer(),
          rows_deleted: Type.Integer(),
        }),
        ...authErrors,
      },
    },
  }, async (request, reply) => {
    reply.header('cache-control', 'no-store')
    let report
    try {
      report = await eraseUserPii(app.services.sql, request.params.user_id, {
        deleteRows: request.query.rows === 'delete',
        audit: (tx) => auditSuccess(tx, request, 200, AUDIT),
      })
    } catch (error) {
      // The audit row and the erasure commit together: neither happened. The refusal hook audits the 503.
      request.audited = false
      request.log.error({ err: describeError(error) }, 'erasure failed; nothing was erased')
      return sendError(reply, 503, 'the erasure could not be carried out (nothing was erased); try again later')
    }
    request.log.info({ data_keys_destroyed: report.data_keys_destroyed, originals_erased: report.originals_erased, rows_deleted: report.rows_deleted }, 'user PII erased')
    return report
  })
}

export default erase
