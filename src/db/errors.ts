/** SQLSTATE of a PostgreSQL error, when the error came from the server. */
function sqlState(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined
}

/**
 * True when the database refused the data itself, so the same rows fail on every retry:
 * data exceptions (22), integrity violations (23) and program limits (54). A foreign-key
 * violation is left out: it means a data key was erased while the batch was in flight, and a
 * retry creates a new one.
 */
export function isDataError(error: unknown): boolean {
  const state = sqlState(error)
  if (state === undefined) return false
  const errorClass = state.slice(0, 2)
  return errorClass === '22' || errorClass === '54' || (errorClass === '23' && state !== '23503')
}

const CONNECTION_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENOTFOUND',
  'CONNECTION_CLOSED', 'CONNECTION_ENDED', 'CONNECTION_DESTROYED', 'CONNECT_TIMEOUT',
])

/**
 * True when the database could not be reached or gave up for reasons of its own (connection
 * errors, SQLSTATE 08 connection, 53 resources, 57 operator intervention such as a statement
 * timeout or shutdown): worth a 503 and a retry, not a 500.
 */
export function isUnavailableError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code
  if (typeof code !== 'string') return false
  if (CONNECTION_CODES.has(code)) return true
  const state = sqlState(error)
  return state !== undefined && ['08', '53', '57'].includes(state.slice(0, 2))
}

/**
 * What may be logged or stored about a database error: codes and names, never the message or
 * detail text, which can quote the refused value.
 */
export function describeError(error: unknown): Record<string, string> {
  const e = (error ?? {}) as Record<string, unknown>
  const out: Record<string, string> = {}
  const state = sqlState(error)
  if (state !== undefined) {
    out.sqlState = state
    for (const field of ['table_name', 'column_name', 'constraint_name'] as const) {
      if (typeof e[field] === 'string') out[field] = e[field]
    }
    return out
  }
  if (typeof e.code === 'string') out.code = e.code
  if (typeof e.name === 'string') out.name = e.name
  // Client-side errors (connection refused, timeouts, SQS faults) carry no message data.
  if (typeof e.message === 'string') out.message = e.message.slice(0, 200)
  return out
}

/** The reason recorded for a message the database refused, from the safe parts of the error. */
export function refusalReason(error: unknown): string {
  const d = describeError(error)
  const where = [d.column_name && `column ${d.column_name}`, d.constraint_name && `constraint ${d.constraint_name}`]
    .filter(Boolean)
    .join(', ')
  return `database refused the row (SQLSTATE ${d.sqlState ?? 'unknown'}${where ? `, ${where}` : ''})`
}
