import postgres, { type Sql } from 'postgres'

export interface SqlOptions {
  url: string
  max: number
  statementTimeoutMs: number
  applicationName?: string
}

/** The one postgres.js instance of the process. TLS follows `sslmode` in the URL (postgres.js reads it). */
export function createSql(options: SqlOptions): Sql {
  return postgres(options.url, {
    max: options.max,
    connect_timeout: 5,
    idle_timeout: 60,
    onnotice: () => {},
    connection: {
      application_name: options.applicationName ?? 'login-ingest',
      ...(options.statementTimeoutMs > 0 ? { statement_timeout: options.statementTimeoutMs } : {}),
    },
  })
}
