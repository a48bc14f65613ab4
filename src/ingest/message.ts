import { Type, type Static } from 'typebox'
import { Compile } from 'typebox/compile'

/**
 * A login event as it arrives in an SQS message body. Limits are those of the table's columns
 * (`varchar(n)` counts characters), so a message that fits here also fits the database.
 */
export const LoginMessage = Type.Object({
  user_id: Type.String({ minLength: 1, maxLength: 128 }),
  device_type: Type.String({ minLength: 1, maxLength: 32 }),
  ip: Type.String({ minLength: 1, maxLength: 1024 }),
  device_id: Type.String({ minLength: 1, maxLength: 1024 }),
  locale: Type.Optional(Type.Union([Type.String({ maxLength: 32 }), Type.Null()])),
  app_version: Type.String({ minLength: 1, maxLength: 64 }),
})
export type LoginMessage = Static<typeof LoginMessage>

const check = Compile(LoginMessage)

export type ParseResult = { ok: true; login: LoginMessage } | { ok: false; reason: string }

/**
 * Parses and validates one body. A rejection reason names the field and the rule it broke,
 * never the value, since values may be PII.
 */
export function parseLoginMessage(body: string): ParseResult {
  let value: unknown
  try {
    value = JSON.parse(body)
  } catch {
    return { ok: false, reason: 'body is not valid JSON' }
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { ok: false, reason: 'body is not a JSON object' }
  }
  const record = value as Record<string, unknown>
  for (const field of Object.keys(LoginMessage.properties) as (keyof LoginMessage)[]) {
    const problem = fieldProblem(field, record[field])
    if (problem !== null) return { ok: false, reason: `${field} ${problem}` }
  }
  if (!check.Check(record)) return { ok: false, reason: 'body does not match the login schema' }
  const { user_id, device_type, ip, device_id, locale, app_version } = record as LoginMessage
  return { ok: true, login: { user_id, device_type, ip, device_id, locale: locale ?? null, app_version } }
}

function fieldProblem(field: keyof LoginMessage, value: unknown): string | null {
  const schema = LoginMessage.properties[field] as { minLength?: number; maxLength?: number }
  const optional = field === 'locale'
  if (value === undefined || value === null) return optional ? null : 'is required'
  if (typeof value !== 'string') return optional ? 'must be a string or null' : 'must be a string'
  // PostgreSQL text cannot hold NUL, and lone surrogates would be silently replaced on the way in.
  if (value.includes('\u0000')) return 'must not contain NUL characters'
  if (!value.isWellFormed()) return 'must be valid Unicode (lone surrogate)'
  const length = codePointLength(value)
  const max = field === 'locale' ? 32 : (schema.maxLength ?? Infinity)
  if (length > max) return `must be at most ${max} characters`
  if (!optional && value.trim() === '') return 'must not be empty'
  return null
}

function codePointLength(text: string): number {
  let n = 0
  for (const _ of text) n++
  return n
}
