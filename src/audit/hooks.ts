import type { FastifyReply, FastifyRequest, onSendAsyncHookHandler } from 'fastify'
import type { Sql, TransactionSql } from 'postgres'
import { describeError } from '../ingest/errors.ts'
import { writeAudit, type AuditAction } from './store.ts'

declare module 'fastify' {
  interface FastifyRequest {
    audited?: boolean
  }
}

/** Header in which callers of the PII routes state why they need them. */
export const REASON_HEADER = 'x-access-reason'

const OUTCOMES: Record<number, string> = {
  200: 'allowed', 400: 'bad-request', 401: 'unauthenticated', 403: 'forbidden', 404: 'not-found',
  410: 'erased', 429: 'rate-limited', 503: 'unavailable',
}

export interface AuditTarget {
  action: AuditAction
  /** what the call was about, as requested (a row id, a user id) */
  target: (request: FastifyRequest) => string | null
}

function entry(request: FastifyRequest, status: number, spec: AuditTarget) {
  const reason = request.headers[REASON_HEADER]
  return {
    action: spec.action,
    keyName: request.apiKey?.name ?? null,
    target: spec.target(request),
    reason: typeof reason === 'string' ? reason : null,
    status,
    outcome: OUTCOMES[status] ?? 'error',
    requestId: request.id,
  }
}

/**
 * Writes the audit row of a call that is about to succeed; must be awaited before PII or an
 * erasure result is sent. Throws when the write fails, so the caller answers 503 instead.
 */
export async function auditSuccess(sql: Sql | TransactionSql, request: FastifyRequest, status: number, spec: AuditTarget): Promise<void> {
  request.audited = true
  await writeAudit(sql, entry(request, status, spec))
}

/**
 * onSend hook that audits every answer the handler did not audit itself: refusals (400, 401,
 * 403, 429) and errors. A refusal carries no PII, so a failed write is logged, not escalated.
 */
export function auditRefusals(sql: Sql, spec: AuditTarget): onSendAsyncHookHandler {
  return async (request: FastifyRequest, reply: FastifyReply, payload: unknown) => {
    if (request.audited !== true) {
      request.audited = true
      await writeAudit(sql, entry(request, reply.statusCode, spec)).catch((error: unknown) =>
        request.log.error({ err: describeError(error), status: reply.statusCode }, 'could not audit a refused call'))
    }
    return payload
  }
}

export const auditUnavailable = {
  statusCode: 503,
  error: 'Service Unavailable',
  message: 'the audit log could not be written, so the call was not carried out; try again later',
}
