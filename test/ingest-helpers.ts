import { randomBytes, randomUUID } from 'node:crypto'
import { sendBodies } from '../src/embedded/samples.ts'
import type { BatchOutcome, LoginPipeline } from '../src/ingest/pipeline.ts'
import type { LoginQueue, QueueMessage } from '../src/ingest/queue.ts'

/*
 * Helpers for tests that drive the real pipeline by hand: valid login records, receiving a
 * given number of messages from the emulator, and send -> receive -> process -> delete.
 */

/** A login as producers send it. */
export interface LoginRecord {
  user_id: string
  app_version: string
  device_type: string
  ip: string
  locale: string | null
  device_id: string
}

/** A valid login with random, recognisable values (a fresh user, ip and device id each call). */
export function loginRecord(overrides: Partial<LoginRecord> = {}): LoginRecord {
  const [a = 0, b = 0, c = 0] = randomBytes(3)
  return {
    user_id: randomUUID(),
    app_version: '2.3.0',
    device_type: 'android',
    ip: `10.${a}.${b}.${c}`,
    locale: 'RU',
    device_id: `dev-${randomBytes(8).toString('hex')}`,
    ...overrides,
  }
}

/** Receives until `count` messages are in hand (SQS hands out at most 10 per call), or fails after `timeoutMs`. */
export async function receiveMessages(
  queue: LoginQueue,
  count: number,
  options: { visibilityTimeoutSeconds?: number; timeoutMs?: number } = {},
): Promise<QueueMessage[]> {
  const received: QueueMessage[] = []
  const deadline = Date.now() + (options.timeoutMs ?? 10_000)
  while (received.length < count) {
    if (Date.now() > deadline) throw new Error(`received ${received.length} of ${count} messages before the timeout`)
    received.push(...(await queue.receive({
      maxMessages: Math.min(10, count - received.length),
      waitTimeSeconds: 1,
      visibilityTimeoutSeconds: options.visibilityTimeoutSeconds ?? 30,
    })))
  }
  return received
}

/**
 * Sends the bodies to the services' queue, then receives them, runs them through the real
 * pipeline and deletes what it stored, as the worker does. Returns the messages and outcomes.
 */
export async function ingestBodies(
  services: { queue: LoginQueue; pipeline: LoginPipeline },
  bodies: readonly string[],
): Promise<{ messages: QueueMessage[]; outcomes: BatchOutcome[] }> {
  await sendBodies(services.queue.client, services.queue.url, bodies)
  const messages: QueueMessage[] = []
  const outcomes: BatchOutcome[] = []
  while (messages.length < bodies.length) {
    const batch = await receiveMessages(services.queue, Math.min(10, bodies.length - messages.length))
    const outcome = await services.pipeline.process(batch)
    const { failed } = await services.queue.delete(outcome.stored)
    if (failed.length > 0) throw new Error(`the queue did not delete ${failed.length} stored messages`)
    messages.push(...batch)
    outcomes.push(outcome)
  }
  return { messages, outcomes }
}
