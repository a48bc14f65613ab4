/**
 * The queue's ceiling: `POLLERS` loops that only receive (10 per call) and batch-delete, with
 * the service's own client setup and calls (LoginQueue), until COUNT messages are deleted.
 * Prints one JSON line: messages, seconds, CPU seconds of this process.
 */
import { SQSClient } from '@aws-sdk/client-sqs'
import { LoginQueue } from '../../src/ingest/queue.ts'

const env = (name: string): string => {
  const value = process.env[name]
  if (value === undefined) throw new Error(`${name} is not set`)
  return value
}

// As src/services.ts builds it: region and endpoint from the environment, credentials too.
const client = new SQSClient({ region: env('AWS_REGION'), endpoint: env('AWS_ENDPOINT_URL') })
const queue = new LoginQueue(client, env('SQS_QUEUE_URL'))
const count = Number(env('COUNT'))
const pollers = Number(env('POLLERS'))
const waitTimeSeconds = Number(process.env.SQS_WAIT_TIME_SECONDS ?? 20)

const abort = new AbortController()
let deleted = 0
const cpu = process.cpuUsage()
const started = performance.now()
await Promise.all(Array.from({ length: pollers }, async () => {
  while (deleted < count) {
    let messages
    try {
      messages = await queue.receive({ maxMessages: 10, waitTimeSeconds, visibilityTimeoutSeconds: 60, signal: abort.signal })
    } catch (error) {
      if (abort.signal.aborted) return
      throw error
    }
    if (messages.length === 0) continue
    // Not `deleted += await ...`: that reads `deleted` before the await and loses the other poller's count.
    const result = await queue.delete(messages)
    deleted += result.deleted
  }
  abort.abort()
}))
const seconds = (performance.now() - started) / 1000
const used = process.cpuUsage(cpu)
process.stdout.write(`${JSON.stringify({ result: { messages: deleted, seconds, cpuSeconds: (used.user + used.system) / 1e6 } })}\n`)
client.destroy()
