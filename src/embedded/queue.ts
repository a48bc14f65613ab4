import { CreateQueueCommand, GetQueueAttributesCommand, GetQueueUrlCommand, SQSClient } from '@aws-sdk/client-sqs'
import { buildApp as buildEmulator } from 'fauxqs'

export const EMBEDDED_QUEUE_NAME = 'login-queue'

/** LocalStack's port: the exercise's own `aws --endpoint-url http://localhost:4566 ...` lines work against us. */
export const LOCALSTACK_PORT = 4566

export interface EmbeddedQueue {
  client: SQSClient
  queueUrl: string
  dlqUrl: string
  /** http://127.0.0.1:<port>, what the service's own client talks to */
  endpoint: string
  /** the port it listens on (4566 unless that was taken or another was asked for) */
  port: number
  /** the port asked for was taken, so another was used: a `localhost:4566` on this machine is not our queue */
  portTaken: boolean
  close(): Promise<void>
}

/** Dummy credentials: the emulator checks none, but the SDK insists on having some. */
export const EMULATOR_CREDENTIALS = { accessKeyId: 'embedded', secretAccessKey: 'embedded' }

export interface EmbeddedQueueOptions {
  region: string
  visibilityTimeoutSeconds: number
  /** port to listen on; 0 picks a free one (tests). When the port is taken, a free one is used instead. */
  port?: number
}

export interface LoopbackEmulator {
  /** http://127.0.0.1:<port> */
  endpoint: string
  port: number
  /** the port asked for was taken, so a free one was used instead */
  portTaken: boolean
  close(): Promise<void>
}

/**
 * The SQS emulator (fauxqs) listening on 127.0.0.1 only. It checks no credentials, and its own
 * `startFauxqs` binds every interface whatever host it is given, so we take its request handler
 * (`buildApp`) and listen ourselves. `port` 0 picks a free port; a taken port falls back to one.
 */
export async function startLoopbackEmulator(options: { region?: string; port?: number } = {}): Promise<LoopbackEmulator> {
  const emulator = buildEmulator({ logger: false, ...(options.region ? { defaultRegion: options.region } : {}) })
  const wanted = options.port ?? 0
  let portTaken = false
  try {
    await emulator.listen({ port: wanted, host: '127.0.0.1' })
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE' || wanted === 0) {
      await emulator.close()
      throw error
    }
    portTaken = true
    await emulator.listen({ port: 0, host: '127.0.0.1' })
  }
  const address = emulator.server.address()
  if (address === null || typeof address === 'string') throw new Error('the SQS emulator has no TCP address')
  return { endpoint: `http://127.0.0.1:${address.port}`, port: address.port, portTaken, close: () => emulator.close() }
}

/** The emulator with `login-queue` and its dead-letter queue set up as docker-compose sets up LocalStack's. */
export async function startEmbeddedQueue(options: EmbeddedQueueOptions): Promise<EmbeddedQueue> {
  const emulator = await startLoopbackEmulator({ region: options.region, port: options.port ?? 0 })
  const client = new SQSClient({ endpoint: emulator.endpoint, region: options.region, credentials: EMULATOR_CREDENTIALS })
  try {
    const dlqUrl = await createQueue(client, `${EMBEDDED_QUEUE_NAME}-dlq`, {})
    const dlqArn = (await client.send(new GetQueueAttributesCommand({ QueueUrl: dlqUrl, AttributeNames: ['QueueArn'] }))).Attributes?.QueueArn
    const queueUrl = await createQueue(client, EMBEDDED_QUEUE_NAME, {
      VisibilityTimeout: String(options.visibilityTimeoutSeconds),
      RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlqArn, maxReceiveCount: 5 }),
    })
    return {
      client,
      queueUrl,
      dlqUrl,
      endpoint: emulator.endpoint,
      port: emulator.port,
      portTaken: emulator.portTaken,
      async close() {
        client.destroy()
        await emulator.close()
      },
    }
  } catch (error) {
    client.destroy()
    await emulator.close()
    throw error
  }
}

/** The queue's URL as LocalStack spells it; the emulator finds queues by name, whatever the host. */
export function localstackStyleUrl(port: number, name = EMBEDDED_QUEUE_NAME): string {
  return `http://localhost:${port}/000000000000/${name}`
}

async function createQueue(client: SQSClient, name: string, attributes: Record<string, string>): Promise<string> {
  await client.send(new CreateQueueCommand({ QueueName: name, Attributes: attributes }))
  const { QueueUrl } = await client.send(new GetQueueUrlCommand({ QueueName: name }))
  if (QueueUrl === undefined) throw new Error(`emulator did not return a URL for ${name}`)
  return QueueUrl
}
