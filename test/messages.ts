import { randomBytes, randomUUID } from 'node:crypto'
import { SendMessageBatchCommand, type SQSClient } from '@aws-sdk/client-sqs'

/** A valid login body with a random user and random (recognisable) ip and device_id. */
export interface TestLogin {
  body: string
  ip: string
  device_id: string
}

const DEVICE_TYPES = ['android', 'ios', 'web'] as const

/**
 * `count` distinct valid logins. The ips are random IPv4 addresses and the device ids have a
 * random 12-hex-digit part, so a test can search logs for them without false hits.
 */
export function testLogins(count: number): TestLogin[] {
  return Array.from({ length: count }, (_, i) => {
    const bytes = randomBytes(4)
    const ip = `${10 + (bytes[0] as number) % 200}.${bytes[1] as number}.${bytes[2] as number}.${1 + (bytes[3] as number) % 254}`
    const device_id = `dev-${randomBytes(6).toString('hex')}`
    const body = JSON.stringify({
      user_id: randomUUID(),
      app_version: `2.${i % 10}.${i % 7}`,
      device_type: DEVICE_TYPES[i % DEVICE_TYPES.length],
      ip,
      locale: i % 5 === 0 ? null : 'DE',
      device_id,
    })
    return { body, ip, device_id }
  })
}

/** Sends the bodies in batches of 10 and returns the SQS message ids, in order. */
export async function sendMessages(client: SQSClient, queueUrl: string, bodies: readonly string[]): Promise<string[]> {
  const ids: string[] = []
  for (let start = 0; start < bodies.length; start += 10) {
    const chunk = bodies.slice(start, start + 10)
    const response = await client.send(
      new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: chunk.map((body, i) => ({ Id: String(i), MessageBody: body })) }),
    )
    if ((response.Failed?.length ?? 0) > 0) throw new Error(`the queue refused ${response.Failed?.length} messages`)
    const byEntry = new Map((response.Successful ?? []).map((s) => [s.Id, s.MessageId]))
    chunk.forEach((_, i) => {
      const id = byEntry.get(String(i))
      if (id === undefined) throw new Error('the queue returned no message id')
      ids.push(id)
    })
  }
  return ids
}

/** What the SQS emulator holds in one queue, read without receiving (fauxqs's inspection route). */
export interface QueueContents {
  /** message id -> ApproximateReceiveCount, for every message still in the queue */
  receiveCounts: Map<string, number>
  ready: number
  inFlight: number
}

export async function inspectQueue(endpoint: string, name: string): Promise<QueueContents> {
  const response = await fetch(`${endpoint}/_fauxqs/queues/${encodeURIComponent(name)}`)
  if (!response.ok) throw new Error(`emulator inspection of ${name} answered ${response.status}`)
  interface Message { messageId: string; approximateReceiveCount: number }
  const body = (await response.json()) as { messages: { ready: Message[]; delayed: Message[]; inflight: { message: Message }[] } }
  const all = [...body.messages.ready, ...body.messages.delayed, ...body.messages.inflight.map((e) => e.message)]
  return {
    receiveCounts: new Map(all.map((m) => [m.messageId, m.approximateReceiveCount])),
    ready: body.messages.ready.length,
    inFlight: body.messages.inflight.length,
  }
}
