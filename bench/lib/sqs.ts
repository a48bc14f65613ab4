import {
  CreateQueueCommand,
  DeleteQueueCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  SendMessageBatchCommand,
  SQSClient,
} from '@aws-sdk/client-sqs'
import type { MessageSource } from './messages.ts'

export const REGION = 'us-east-1'
/** The emulator checks no credentials; the SDK wants some. */
export const CREDENTIALS = { accessKeyId: 'bench', secretAccessKey: 'bench' }

export function sqsClient(endpoint: string): SQSClient {
  return new SQSClient({ endpoint, region: REGION, credentials: CREDENTIALS })
}

/** Creates a queue and returns its URL as the emulator spells it (GetQueueUrl, never a built URL). */
export async function createQueue(client: SQSClient, name: string, visibilityTimeoutSeconds = 60): Promise<string> {
  await client.send(new CreateQueueCommand({ QueueName: name, Attributes: { VisibilityTimeout: String(visibilityTimeoutSeconds) } }))
  const { QueueUrl } = await client.send(new GetQueueUrlCommand({ QueueName: name }))
  if (QueueUrl === undefined) throw new Error(`no URL for queue ${name}`)
  return QueueUrl
}

export async function deleteQueue(client: SQSClient, url: string): Promise<void> {
  await client.send(new DeleteQueueCommand({ QueueUrl: url })).catch(() => {})
}

/** Sends messages [from, to) of the source in batches of 10, `concurrency` calls at a time. */
export async function fill(client: SQSClient, url: string, source: MessageSource, to: number, options: { from?: number; concurrency?: number } = {}): Promise<number> {
  const started = performance.now()
  let next = options.from ?? 0
  const count = to - next
  await Promise.all(Array.from({ length: options.concurrency ?? 8 }, async () => {
    while (next < to) {
      const start = next
      next = Math.min(to, next + 10)
      const entries = []
      for (let i = start; i < next; i++) entries.push({ Id: String(i - start), MessageBody: source.body(i) })
      const response = await client.send(new SendMessageBatchCommand({ QueueUrl: url, Entries: entries }))
      if ((response.Failed?.length ?? 0) > 0) throw new Error(`the emulator refused ${response.Failed?.length} messages`)
    }
  }))
  return count / ((performance.now() - started) / 1000)
}

export async function depth(client: SQSClient, url: string): Promise<{ visible: number; inFlight: number }> {
  const response = await client.send(new GetQueueAttributesCommand({
    QueueUrl: url,
    AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
  }))
  return {
    visible: Number(response.Attributes?.ApproximateNumberOfMessages ?? NaN),
    inFlight: Number(response.Attributes?.ApproximateNumberOfMessagesNotVisible ?? NaN),
  }
}

/**
 * Polls until the queue holds nothing (neither visible nor in flight); resolves with that moment
 * (performance.now()). Gives up when the queue has not shrunk for `stallMs` (a consumer that
 * keeps failing), or after `timeoutMs`.
 */
export async function waitEmpty(
  client: SQSClient,
  url: string,
  options: { timeoutMs: number; stallMs?: number; everyMs?: number; onTick?: () => void; explain?: () => string },
): Promise<number> {
  const deadline = Date.now() + options.timeoutMs
  let least = Infinity
  let progressAt = Date.now()
  for (;;) {
    const { visible, inFlight } = await depth(client, url)
    if (visible === 0 && inFlight === 0) return performance.now()
    options.onTick?.()
    if (visible + inFlight < least) {
      least = visible + inFlight
      progressAt = Date.now()
    }
    const stalled = Date.now() - progressAt > (options.stallMs ?? 120_000)
    if (stalled || Date.now() > deadline) {
      throw new Error(`queue not drained: ${stalled ? 'no progress for' : 'still busy after'} ${Math.round((Date.now() - (stalled ? progressAt : deadline - options.timeoutMs)) / 1000)} s ` +
        `(${visible} visible, ${inFlight} in flight)${options.explain ? `\n${options.explain()}` : ''}`)
    }
    await new Promise((resolve) => setTimeout(resolve, options.everyMs ?? 100))
  }
}
