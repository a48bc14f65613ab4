import type { SQSClient } from '@aws-sdk/client-sqs'
import type { BenchDatabase } from './db.ts'
import type { BenchKeys, ServiceRuntime } from './service.ts'

export interface Options {
  quick: boolean
  /** section 1 and 2: messages drained */
  messages: number
  /** repetitions of sections 1 and 2 (ratios are their median) */
  repeat: number
  /** section 3: messages of the one-at-a-time loop */
  typicalMessages: number
  /** section 4: messages of the database path */
  dbMessages: number
  /** section 7: the large backlog (the small one is section 1's run) */
  memoryMessages: number
  /** section 6: rows in user_logins */
  rows: number
  /** section 6: seconds of each autocannon run */
  apiSeconds: number
  apiConnections: number
  /** WORKER_CONCURRENCY of the service, and the pollers of the ceiling loop */
  pollers: number
  fillConcurrency: number
  serviceLogLevel: string
  /** build: the compiled service as the image runs it; tsx: the TypeScript through tsx */
  serviceRuntime: 'tsx' | 'build'
  sections: Set<number>
  /** section 8: table sizes compared with the empty table */
  scaleRows: number[]
  /** section 8: messages ingested at each size */
  scaleMessages: number
  /** write V8 CPU profiles of the service in sections 1 and 6 */
  profile: boolean
  databaseUrl: string
  out: string | undefined
}

export interface Context {
  options: Options
  db: BenchDatabase
  keys: BenchKeys
  runtime: ServiceRuntime
  emulator: { endpoint: string; pid: number; client: SQSClient }
  log(message: string): void
}

export const round = (value: number, digits = 2): number => {
  const f = 10 ** digits
  return Math.round(value * f) / f
}
