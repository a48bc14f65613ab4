import type { FastifyBaseLogger } from 'fastify'
import type { Sql } from 'postgres'
import { describeError } from './errors.ts'
import type { LoginPipeline, QueueMessage, StoreCounts } from './pipeline.ts'
import type { LoginQueue } from './queue.ts'

export interface WorkerOptions {
  concurrency: number
  waitTimeSeconds: number
  visibilityTimeoutSeconds: number
  /** ceiling of the exponential back-off after failures */
  maxBackoffMs?: number
}

export interface WorkerFailure {
  at: string
  /** which dependency failed: the queue (receive, delete) or the database (store) */
  dependency: 'queue' | 'database'
  error: Record<string, string>
}

export interface WorkerState {
  status: 'idle' | 'running' | 'stopping' | 'stopped'
  pollers: number
  batchesInFlight: number
  lastPollAt: string | null
  lastSuccessfulPollAt: string | null
  lastError: WorkerFailure | null
}

export interface BatchReport extends StoreCounts {
  received: number
  deleted: number
  deleteFailures: number
  durationMs: number
}

export interface Totals {
  received: number
  inserted: number
  duplicates: number
  rejected: number
  deleted: number
  deleteFailures: number
  pollErrors: number
  storeErrors: number
}

class DependencyError extends Error {
  constructor(
    readonly dependency: 'queue' | 'database',
    readonly failure: unknown,
  ) {
    super(`${dependency} failed`)
  }
}

const sleepFor = (failures: number, ceiling: number): number =>
  Math.min(ceiling, 250 * 2 ** Math.min(failures, 10)) * (0.5 + Math.random() / 2)

/**
 * The background consumer: `concurrency` pollers, each a chain of setTimeout-scheduled ticks
 * (long-poll, process, delete), never a tight loop. A batch is deleted only after its commit.
 * After a database failure a poller checks the database before it receives again, so an outage
 * does not burn the messages' receive counts towards the dead-letter queue.
 */
export class IngestWorker {
  readonly totals: Totals = {
    received: 0, inserted: 0, duplicates: 0, rejected: 0, deleted: 0, deleteFailures: 0, pollErrors: 0, storeErrors: 0,
  }
  private status: WorkerState['status'] = 'idle'
  private readonly ticks = new Set<Promise<void>>()
  private readonly timers = new Set<NodeJS.Timeout>()
  private abort = new AbortController()
  private batchesInFlight = 0
  private lastPollAt: Date | null = null
  private lastSuccessfulPollAt: Date | null = null
  private lastError: WorkerFailure | null = null
  private databaseSuspect = false
  private readonly batchListeners: ((report: BatchReport) => void)[] = []
  private readonly failureListeners: ((dependency: 'queue' | 'database') => void)[] = []

  constructor(
    private readonly queue: LoginQueue,
    private readonly pipeline: LoginPipeline,
    private readonly sql: Sql,
    private readonly log: FastifyBaseLogger,
    private readonly options: WorkerOptions,
  ) {}

  onBatch(listener: (report: BatchReport) => void): void {
    this.batchListeners.push(listener)
  }

  onFailure(listener: (dependency: 'queue' | 'database') => void): void {
    this.failureListeners.push(listener)
  }

  state(): WorkerState {
    return {
      status: this.status,
      pollers: this.status === 'running' ? this.options.concurrency : 0,
      batchesInFlight: this.batchesInFlight,
      lastPollAt: this.lastPollAt?.toISOString() ?? null,
      lastSuccessfulPollAt: this.lastSuccessfulPollAt?.toISOString() ?? null,
      lastError: this.lastError,
    }
  }

  start(): void {
    if (this.status === 'running') return
    this.status = 'running'
    this.abort = new AbortController()
    for (let poller = 0; poller < this.options.concurrency; poller++) this.schedule(poller, 0, 0)
    this.log.info({ pollers: this.options.concurrency }, 'ingestion worker started')
  }

  /** Stops polling, lets the batches in flight commit and delete, then resolves. */
  async stop(): Promise<void> {
    if (this.status !== 'running') return
    this.status = 'stopping'
    for (const timer of this.timers) clearTimeout(timer)
    this.timers.clear()
    this.abort.abort()
    while (this.ticks.size > 0) await Promise.allSettled([...this.ticks])
    this.status = 'stopped'
    this.log.info('ingestion worker stopped; batches in flight finished')
  }

  /**
   * Processes one received batch: store (with heartbeat), then delete what was committed.
   * Throws a DependencyError-wrapped failure when the batch must stay on the queue.
   */
  async runBatch(messages: readonly QueueMessage[]): Promise<BatchReport> {
    const started = performance.now()
    this.batchesInFlight++
    const heartbeatMs = (this.options.visibilityTimeoutSeconds * 1000) / 2
    const heartbeat = setInterval(() => {
      this.queue.extendVisibility(messages, this.options.visibilityTimeoutSeconds).catch((error: unknown) => {
        this.log.warn({ err: describeError(error) }, 'could not extend the visibility of a slow batch')
      })
    }, heartbeatMs)
    try {
      let outcome
      try {
        outcome = await this.pipeline.process(messages)
      } catch (error) {
        throw new DependencyError('database', error)
      }
      clearInterval(heartbeat)
      let deleted = 0
      let failed: { messageId: string; code: string }[] = []
      try {
        ;({ deleted, failed } = await this.queue.delete(outcome.stored))
      } catch (error) {
        // Committed but not deleted: the messages come back and are counted as duplicates then.
        failed = outcome.stored.map((m) => ({ messageId: m.messageId, code: 'DeleteRequestFailed' }))
        this.recordFailure('queue', error)
      }
      for (const failure of failed) {
        this.log.warn({ messageId: failure.messageId, code: failure.code }, 'SQS did not delete a stored message; it will be redelivered and skipped as a duplicate')
      }
      const report: BatchReport = {
        received: messages.length,
        inserted: outcome.inserted,
        duplicates: outcome.duplicates,
        rejected: outcome.rejected,
        deleted,
        deleteFailures: failed.length,
        durationMs: performance.now() - started,
      }
      this.count(report)
      return report
    } finally {
      clearInterval(heartbeat)
      this.batchesInFlight--
    }
  }

  private count(report: BatchReport): void {
    this.totals.received += report.received
    this.totals.inserted += report.inserted
    this.totals.duplicates += report.duplicates
    this.totals.rejected += report.rejected
    this.totals.deleted += report.deleted
    this.totals.deleteFailures += report.deleteFailures
    for (const listener of this.batchListeners) listener(report)
  }

  private schedule(poller: number, failures: number, delayMs: number): void {
    if (this.status !== 'running') return
    const timer = setTimeout(() => {
      this.timers.delete(timer)
      const tick = this.tick(poller, failures).finally(() => this.ticks.delete(tick))
      this.ticks.add(tick)
    }, delayMs)
    this.timers.add(timer)
  }

  private async tick(poller: number, failures: number): Promise<void> {
    try {
      if (this.databaseSuspect) {
        try {
          await this.sql`SELECT 1`
        } catch (error) {
          throw new DependencyError('database', error)
        }
        this.databaseSuspect = false
        this.log.info('database reachable again; resuming polling')
      }
      let messages: QueueMessage[]
      try {
        this.lastPollAt = new Date()
        messages = await this.queue.receive({
          maxMessages: 10,
          waitTimeSeconds: this.options.waitTimeSeconds,
          visibilityTimeoutSeconds: this.options.visibilityTimeoutSeconds,
          signal: this.abort.signal,
        })
        this.lastSuccessfulPollAt = new Date()
      } catch (error) {
        if (this.abort.signal.aborted) return
        throw new DependencyError('queue', error)
      }
      if (messages.length > 0) await this.runBatch(messages)
      this.schedule(poller, 0, 0)
    } catch (error) {
      const failure = error instanceof DependencyError ? error : new DependencyError('database', error)
      this.recordFailure(failure.dependency, failure.failure)
      if (failure.dependency === 'database') this.databaseSuspect = true
      this.schedule(poller, failures + 1, sleepFor(failures + 1, this.options.maxBackoffMs ?? 30_000))
    }
  }

  private recordFailure(dependency: 'queue' | 'database', cause: unknown): void {
    if (dependency === 'queue') this.totals.pollErrors++
    else this.totals.storeErrors++
    for (const listener of this.failureListeners) listener(dependency)
    const error = describeError(cause)
    this.lastError = { at: new Date().toISOString(), dependency, error }
    this.log.warn({ dependency, err: error }, `${dependency} unavailable; messages stay on the queue, retrying with back-off`)
  }
}

export { DependencyError }
