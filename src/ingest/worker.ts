import type { FastifyBaseLogger } from 'fastify'
import type { Sql } from 'postgres'
import { BatchStore, DependencyError, type BatchReport, type Dependency } from './batches.ts'
import { describeError } from '../db/errors.ts'
import type { LoginPipeline } from './pipeline.ts'
import type { LoginQueue, QueueMessage } from './queue.ts'

export { DependencyError, type BatchReport } from './batches.ts'

export interface WorkerOptions {
  concurrency: number
  waitTimeSeconds: number
  visibilityTimeoutSeconds: number
  /** ceiling of the exponential back-off after failures */
  maxBackoffMs?: number
  /** most messages one transaction stores when it takes the batches of several receives together (default 100) */
  maxMessagesPerTransaction?: number
  /** store transactions running at once (default 1: batches that arrive meanwhile go into the next, as a group commit) */
  maxTransactions?: number
  /** received batches a poller may have waiting for their commit before it receives again, while the database commits (default 10) */
  maxBatchesPerPoller?: number
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

const sleepFor = (failures: number, ceiling: number): number =>
  Math.min(ceiling, 250 * 2 ** Math.min(failures, 10)) * (0.5 + Math.random() / 2)

/**
 * The background consumer: `concurrency` pollers, each a chain of setTimeout-scheduled ticks
 * (long-poll, submit the batch), never a tight loop. Batches go to the BatchStore, the one
 * store-and-delete path (group commit, heartbeat, delete after commit, report), which
 * `POST /ingest` uses too. While the database commits, a poller receives again before its
 * previous batches are stored, up to `maxBatchesPerPoller` uncommitted batches; before the first
 * commit and after a failure it waits for each batch's commit (one at a time). After a database
 * failure a poller checks the database before it receives again, so an outage does not burn the
 * messages' receive counts towards the dead-letter queue.
 */
export class IngestWorker {
  readonly totals: Totals = {
    received: 0, inserted: 0, duplicates: 0, rejected: 0, deleted: 0, deleteFailures: 0, pollErrors: 0, storeErrors: 0,
  }
  /** the one store-and-delete path; POST /ingest submits its batches here too */
  readonly batches: BatchStore
  private status: WorkerState['status'] = 'idle'
  private readonly ticks = new Set<Promise<void>>()
  private readonly timers = new Set<NodeJS.Timeout>()
  private lastPollAt: Date | null = null
  private lastSuccessfulPollAt: Date | null = null
  private lastError: WorkerFailure | null = null
  private databaseSuspect = false
  /** pollers whose batch failed to store since their last tick: they back off */
  private readonly failedPollers = new Set<number>()
  private readonly batchListeners: ((report: BatchReport) => void)[] = []
  private readonly failureListeners: ((dependency: Dependency) => void)[] = []

  constructor(
    private readonly queue: LoginQueue,
    pipeline: LoginPipeline,
    private readonly sql: Sql,
    private readonly log: FastifyBaseLogger,
    private readonly options: WorkerOptions,
  ) {
    this.batches = new BatchStore(queue, pipeline, log, {
      visibilityTimeoutSeconds: options.visibilityTimeoutSeconds,
      ...(options.maxMessagesPerTransaction === undefined ? {} : { maxMessagesPerTransaction: options.maxMessagesPerTransaction }),
      ...(options.maxTransactions === undefined ? {} : { maxTransactions: options.maxTransactions }),
    }, {
      report: (report) => this.count(report),
      failure: (dependency, cause) => this.recordFailure(dependency, cause),
    })
  }

  onBatch(listener: (report: BatchReport) => void): void {
    this.batchListeners.push(listener)
  }

  onFailure(listener: (dependency: Dependency) => void): void {
    this.failureListeners.push(listener)
  }

  state(): WorkerState {
    return {
      status: this.status,
      pollers: this.status === 'running' ? this.options.concurrency : 0,
      batchesInFlight: this.batches.inFlight,
      lastPollAt: this.lastPollAt?.toISOString() ?? null,
      lastSuccessfulPollAt: this.lastSuccessfulPollAt?.toISOString() ?? null,
      lastError: this.lastError,
    }
  }

  start(): void {
    if (this.status === 'running' || this.status === 'stopping') return
    this.status = 'running'
    for (let poller = 0; poller < this.options.concurrency; poller++) this.schedule(poller, 0, 0)
    this.log.info({ pollers: this.options.concurrency }, 'ingestion worker started')
  }

  /**
   * Stops scheduling polls, lets the long polls in flight return (within the wait time) and
   * stores and deletes what they and the batches in flight bring, then resolves. The polls are
   * not aborted: SQS (and its emulators) would keep an abandoned poll open and hand it messages
   * that then stay invisible for the visibility timeout.
   */
  async stop(): Promise<void> {
    if (this.status !== 'running') return
    this.status = 'stopping'
    for (const timer of this.timers) clearTimeout(timer)
    this.timers.clear()
    // A tick waiting for room wakes at the next commit and returns; a tick in a poll submits what it brings.
    while (this.ticks.size > 0) await Promise.allSettled([...this.ticks])
    await this.batches.idle()
    this.status = 'stopped'
    this.log.info('ingestion worker stopped; batches in flight finished')
  }

  /**
   * Whether a poller may receive another batch: it may have one uncommitted batch until the
   * database commits, more while it does; and all pollers together at most twice that many
   * batches not yet deleted, so memory stays bounded whatever the backlog.
   */
  private hasRoom(poller: number): boolean {
    const perPoller = this.batches.committing ? Math.max(1, this.options.maxBatchesPerPoller ?? 10) : 1
    return this.batches.uncommitted(poller) < perPoller && this.batches.inFlight < 2 * perPoller * this.options.concurrency
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
      // Receive again only when this poller has room for one more uncommitted batch.
      while (this.status === 'running' && !this.failedPollers.has(poller) && !this.hasRoom(poller)) await this.batches.changed()
      if (this.status !== 'running') return
      if (this.failedPollers.delete(poller)) {
        // Its batch failed to store (already recorded): back off, then probe the database.
        this.schedule(poller, failures + 1, sleepFor(failures + 1, this.options.maxBackoffMs ?? 30_000))
        return
      }
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
        })
        this.lastSuccessfulPollAt = new Date()
      } catch (error) {
        throw new DependencyError('queue', error)
      }
      // Stored and deleted even when the worker is stopping meanwhile: stop() waits for it.
      if (messages.length > 0) {
        this.batches.submit(messages, poller).committed.catch(() => {
          this.failedPollers.add(poller)
          this.databaseSuspect = true
        })
      }
      this.schedule(poller, 0, 0)
    } catch (error) {
      const failure = error instanceof DependencyError ? error : new DependencyError('database', error)
      this.recordFailure(failure.dependency, failure.failure)
      if (failure.dependency === 'database') this.databaseSuspect = true
      this.schedule(poller, failures + 1, sleepFor(failures + 1, this.options.maxBackoffMs ?? 30_000))
    }
  }

  private recordFailure(dependency: Dependency, cause: unknown): void {
    if (dependency === 'queue') this.totals.pollErrors++
    else this.totals.storeErrors++
    for (const listener of this.failureListeners) listener(dependency)
    const error = describeError(cause)
    this.lastError = { at: new Date().toISOString(), dependency, error }
    this.log.warn({ dependency, err: error }, `${dependency} unavailable; messages stay on the queue, retrying with back-off`)
  }
}
