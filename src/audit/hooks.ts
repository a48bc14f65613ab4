import type { FastifyReply, FastifyRequest, onSendAsyncHookHandler, preValidationAsyncHookHandler } from 'fastify'
import type { Sql, TransactionSql } from 'postgres'
import { describeError } from '../db/errors.ts'
import { sendError } from '../http/errors.ts'
import { hasUndecodablePath } from '../http/url.ts'
import { writeAudit, type AuditAction, type AuditEntry } from './store.ts'

declare module 'fastify' {
  interface FastifyRequest {
    audited?: boolean
    accessReason?: AccessReason
  }
}

/** Header in which callers of the PII routes state why they need them. */
export const REASON_HEADER = 'x-access-reason'

/** Marks a hook that audits a route, so the OpenAPI document can say which action it records. */
export const AUDIT_ACTION = Symbol('audit action')

const OUTCOMES: Record<number, string> = {
  200: 'allowed', 400: 'bad-request', 401: 'unauthenticated', 403: 'forbidden', 404: 'not-found',
  410: 'erased', 429: 'rate-limited', 503: 'unavailable',
}

export interface AuditTarget {
  action: AuditAction
  /** what the call was about, as requested (a row id, a user id) */
  target: (request: FastifyRequest) => string | null
}

interface AccessReason {
  text: string | null
  /** false when the header's bytes are not UTF-8: `text` then shows them as \xHH */
  utf8: boolean
}

/**
 * The reason header as the caller wrote it. Node hands header bytes over as Latin-1 characters;
 * they are decoded as UTF-8 once per request (decoding twice would garble "ü" again).
 */
function accessReason(request: FastifyRequest): AccessReason {
  if (request.accessReason) return request.accessReason
  const raw = request.headers[REASON_HEADER]
  let reason: AccessReason
  // eslint-disable-next-line no-control-regex
  if (typeof raw !== 'string' || /^[\x00-\x7f]*$/.test(raw) || /[^\x00-\xff]/.test(raw)) {
    // ASCII, absent, or already decoded (characters above U+00FF never come from the HTTP parser)
    reason = { text: typeof raw === 'string' ? raw : null, utf8: true }
  } else {
    const bytes = Buffer.from(raw, 'latin1')
    try {
      reason = { text: new TextDecoder('utf-8', { fatal: true }).decode(bytes), utf8: true }
    } catch {
      const shown = [...bytes].map((b) => (b >= 0x80 ? `\\x${b.toString(16)}` : b === 0x5c ? '\\\\' : String.fromCharCode(b))).join('')
      reason = { text: shown, utf8: false }
    }
  }
  request.accessReason = reason
  return reason
}

function entry(request: FastifyRequest, status: number, spec: AuditTarget): AuditEntry {
  const reason = accessReason(request)
  const notes: string[] = []
  if (!reason.utf8) notes.push('reason not UTF-8: bytes above 0x7f as \\xHH')
  if (hasUndecodablePath(request.raw)) notes.push('target not UTF-8: kept percent-encoded as sent')
  return {
    action: spec.action,
    keyName: request.apiKey?.name ?? null,
    target: spec.target(request),
    reason: reason.text,
    status,
    outcome: OUTCOMES[status] ?? 'error',
    requestId: request.id,
    notes,
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
 * The hooks of an audited route:
 * - preValidation puts the reason, decoded from UTF-8, where the schema checks it (400 when the
 *   bytes are not UTF-8: an auditor must read what the caller sent);
 * - onSend audits every answer the handler did not audit itself: refusals (400, 401, 403, 429)
 *   and errors, through the app's RefusalAudit (bounded under a flood). A refusal carries no PII,
 *   so a failed write is logged, not escalated.
 */
export function audited(spec: AuditTarget): { preValidation: preValidationAsyncHookHandler; onSend: onSendAsyncHookHandler } {
  const onSend = async (request: FastifyRequest, reply: FastifyReply, payload: unknown) => {
    if (request.audited !== true) {
      request.audited = true
      await request.server.refusalAudit.record(entry(request, reply.statusCode, spec)).catch((error: unknown) =>
        request.log.error({ err: describeError(error), status: reply.statusCode }, 'could not audit a refused call'))
    }
    return payload
  }
  const preValidation = async (request: FastifyRequest, reply: FastifyReply) => {
    const reason = accessReason(request)
    if (!reason.utf8) return sendError(reply, 400, `headers/${REASON_HEADER} must be UTF-8 text`)
    if (reason.text !== null) request.headers[REASON_HEADER] = reason.text
  }
  return { preValidation, onSend: Object.assign(onSend, { [AUDIT_ACTION]: spec.action }) }
}

/** The 503 message of an audited call whose audit row could not be written. */
export const AUDIT_UNAVAILABLE = 'the audit log could not be written, so the call was not carried out; try again later'
