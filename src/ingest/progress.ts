import type { FastifyBaseLogger } from 'fastify'
import { describeError } from '../db/errors.ts'
import type { BatchReport } from './worker.ts'

/** What ingestion did since the last progress line. */
interface Window {
  batches: number
  received: number
  stored: number
  duplicates: number
  rejected: number
  rejectedReasons: Record<string, number>
  deleteFailures: number
}

const emptyWindow = (): Window => ({ batches: 0, received: 0, stored: 0, duplicates: 0, rejected: 0, rejectedReasons: {}, deleteFailures: 0 })

/**
 * One info line every `intervalMs` while ingestion works, with what changed since the last
 * one (and the queue's depth), instead of a line per batch; nothing while idle.
 */
export class ProgressLog {
  private window = emptyWindow()
  private timer: NodeJS.Timeout | undefined
  private flushing: Promise<void> = Promise.resolve()

  constructor(
    private readonly log: FastifyBaseLogger,
    private readonly intervalMs: number,
    /** messages waiting in the queue, or null when that cannot be read */
    private readonly queueDepth: () => Promise<{ visible: number; inFlight: number }>,
  ) {}

  /** To be given to `IngestWorker.onBatch`. */
  readonly record = (report: BatchReport): void => {
    const w = this.window
    w.batches++
    w.received += report.received
    w.stored += report.inserted
    w.duplicates += report.duplicates
    w.rejected += report.rejected
    w.deleteFailures += report.deleteFailures
    for (const [reason, n] of Object.entries(report.rejectedReasons)) w.rejectedReasons[reason] = (w.rejectedReasons[reason] ?? 0) + n
    this.log.debug({ received: report.received, stored: report.inserted, duplicates: report.duplicates, rejected: report.rejected }, 'batch stored')
  }

  start(): void {
    if (this.timer !== undefined || this.intervalMs <= 0) return
    this.timer = setInterval(() => {
      this.flushing = this.flush()
    }, this.intervalMs).unref()
  }

  /** Stops the timer and writes what the last window saw. */
  async stop(): Promise<void> {
    clearInterval(this.timer)
    this.timer = undefined
    await this.flushing
    await this.flush()
  }

  private async flush(): Promise<void> {
    const w = this.window
    if (w.batches === 0) return
    this.window = emptyWindow()
    let queue: { waiting: number; inFlight: number } | null = null
    try {
      const depth = await this.queueDepth()
      queue = { waiting: depth.visible, inFlight: depth.inFlight }
    } catch (error) {
      this.log.debug({ err: describeError(error) }, 'could not read the queue depth for the progress line')
    }
    this.log.info(
      {
        received: w.received,
        stored: w.stored,
        duplicates: w.duplicates,
        rejected: w.rejected,
        ...(w.rejected > 0 ? { rejectedReasons: w.rejectedReasons } : {}),
        ...(w.deleteFailures > 0 ? { deleteFailures: w.deleteFailures } : {}),
        queue,
      },
      `ingestion: ${w.received} received, ${w.stored} stored, ${w.duplicates} duplicates, ${w.rejected} rejected` +
        (queue === null ? '' : `; ${queue.waiting} waiting in the queue`),
    )
  }
}
