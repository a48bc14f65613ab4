import { STATUS_CODES } from 'node:http'
import type { FastifyReply } from 'fastify'
import type { Static } from 'typebox'
import type { ErrorResponse } from '../schemas/common.ts'

/** The body of every error answer, as the document describes it (schemas/common.ts ErrorResponse). */
export type ErrorBody = Static<typeof ErrorResponse>

/** An error answer's body: the status, its standard name and a message a caller can act on (never PII). */
export function errorBody(status: number, message: string, extra: { requestId?: string } = {}): ErrorBody {
  return { statusCode: status, error: STATUS_CODES[status] ?? 'Error', message, ...extra }
}

/** Answers with an error body; `return sendError(...)` from a handler or hook. */
export function sendError(reply: FastifyReply, status: number, message: string, extra: { requestId?: string } = {}): FastifyReply {
  return reply.code(status).send(errorBody(status, message, extra))
}

/** An error a helper throws to end the request with this status and message (the app's error handler answers it). */
export class HttpError extends Error {
  readonly statusCode: number

  constructor(status: number, message: string) {
    super(message)
    this.name = 'HttpError'
    this.statusCode = status
  }
}
