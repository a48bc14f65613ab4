import { CreateQueueCommand, GetQueueAttributesCommand, GetQueueUrlCommand, SQSClient } from '@aws-sdk/client-sqs'
import { startFauxqs } from 'fauxqs'

export const EMBEDDED_QUEUE_NAME = 'login-queue'

export interface EmbeddedQueue {
  client: SQSClient
  queueUrl: string
  dlqUrl: string
  endpoint: string
  close(): Promise<void>
}

/** Dummy credentials: the emulator checks none, but the SDK insists on having some. */
export const EMULATOR_CREDENTIALS = { accessKeyId: 'embedded', secretAccessKey: 'embedded' }

/**
 * An in-process SQS emulator (fauxqs) on a loopback port, with `login-queue` and its
 * dead-letter queue set up as docker-compose sets up LocalStack's. It keeps nothing on disk.
 */
export async function startEmbeddedQueue(options: { region: string; visibilityTimeoutSeconds: number }): Promise<EmbeddedQueue> {
  const server = await startFauxqs({ port: 0, host: '127.0.0.1', logger: false, defaultRegion: options.region })
  const client = new SQSClient({ endpoint: server.address, region: options.region, credentials: EMULATOR_CREDENTIALS })
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
    endpoint: server.address,
    async close() {
      client.destroy()
      await server.stop()
    },
  }
}

async function createQueue(client: SQSClient, name: string, attributes: Record<string, string>): Promise<string> {
  await client.send(new CreateQueueCommand({ QueueName: name, Attributes: attributes }))
  // The emulator's URLs must come from GetQueueUrl: it does not accept LocalStack-style ones.
  const { QueueUrl } = await client.send(new GetQueueUrlCommand({ QueueName: name }))
  if (QueueUrl === undefined) throw new Error(`emulator did not return a URL for ${name}`)
  return QueueUrl
}
