/**
 * The database did not answer in time. Its code is one of the connection codes, so the API
 * answers 503 like any other database outage.
 */
export class DatabaseTimeoutError extends Error {
  readonly code = 'CONNECT_TIMEOUT'
  constructor(ms: number) {
    super(`the database did not answer within ${ms} ms`)
  }
}

/**
 * Bounds a read the API waits on. postgres.js queues queries while it reconnects, without a
 * limit of its own, so a database that accepts connections and drops them would hold requests
 * forever. Only for reads: an abandoned read is harmless, an abandoned write may still commit.
 */
export async function withDeadline<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DatabaseTimeoutError(ms)), ms)
  })
  try {
    return await Promise.race([work, late])
  } finally {
    clearTimeout(timer)
  }
}
