import {
  ChangeMessageVisibilityBatchCommand,
  DeleteMessageBatchCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs'

/** One message as received from the queue. */
export interface QueueMessage {
  messageId: string
  receiptHandle: string
  body: string
  sentAt: Date
  receiveCount: number
}

export interface ReceiveOptions {
  maxMessages: number
  waitTimeSeconds: number
  visibilityTimeoutSeconds: number
  signal?: AbortSignal
}

export interface DeleteResult {
  deleted: number
  /** entries SQS did not delete, with its code (they will be delivered again and found to be duplicates) */
  failed: { messageId: string; code: string }[]
}

/** The login queue as the pipeline sees it: receive, delete after commit, extend, count. */
export class LoginQueue {
  constructor(
    readonly client: SQSClient,
    readonly url: string,
  ) {}

  async receive(options: ReceiveOptions): Promise<QueueMessage[]> {
    const response = await this.client.send(
      new ReceiveMessageCommand({
        QueueUrl: this.url,
        MaxNumberOfMessages: options.maxMessages,
        WaitTimeSeconds: options.waitTimeSeconds,
        VisibilityTimeout: options.visibilityTimeoutSeconds,
        MessageSystemAttributeNames: ['SentTimestamp', 'ApproximateReceiveCount'],
      }),
      options.signal ? { abortSignal: options.signal } : {},
    )
    const now = Date.now()
    return (response.Messages ?? []).flatMap((m) => {
      if (m.MessageId === undefined || m.ReceiptHandle === undefined) return []
      const sent = Number(m.Attributes?.SentTimestamp)
      return [{
        messageId: m.MessageId,
        receiptHandle: m.ReceiptHandle,
        body: m.Body ?? '',
        sentAt: new Date(Number.isFinite(sent) && sent > 0 ? sent : now),
        receiveCount: Number(m.Attributes?.ApproximateReceiveCount ?? 1) || 1,
      }]
    })
  }

  /** Deletes up to 10 messages per call and reports each entry SQS refused. */
  async delete(messages: readonly QueueMessage[]): Promise<DeleteResult> {
    const result: DeleteResult = { deleted: 0, failed: [] }
    for (let start = 0; start < messages.length; start += 10) {
      const chunk = messages.slice(start, start + 10)
      const response = await this.client.send(
        new DeleteMessageBatchCommand({
          QueueUrl: this.url,
          Entries: chunk.map((m, i) => ({ Id: String(i), ReceiptHandle: m.receiptHandle })),
        }),
      )
      result.deleted += response.Successful?.length ?? 0
      for (const failure of response.Failed ?? []) {
        const message = chunk[Number(failure.Id)]
        result.failed.push({ messageId: message?.messageId ?? 'unknown', code: failure.Code ?? 'unknown' })
      }
    }
    return result
  }

  /** Heartbeat: keeps slow batches invisible so no other consumer starts them again. */
  async extendVisibility(messages: readonly QueueMessage[], seconds: number): Promise<void> {
    for (let start = 0; start < messages.length; start += 10) {
      const chunk = messages.slice(start, start + 10)
      await this.client.send(
        new ChangeMessageVisibilityBatchCommand({
          QueueUrl: this.url,
          Entries: chunk.map((m, i) => ({ Id: String(i), ReceiptHandle: m.receiptHandle, VisibilityTimeout: seconds })),
        }),
      )
    }
  }

  /** Approximate numbers of waiting and in-flight messages. */
  async depth(signal?: AbortSignal): Promise<{ visible: number; inFlight: number }> {
    const response = await this.client.send(
      new GetQueueAttributesCommand({
        QueueUrl: this.url,
        AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
      }),
      signal ? { abortSignal: signal } : {},
    )
    return {
      visible: Number(response.Attributes?.ApproximateNumberOfMessages ?? 0),
      inFlight: Number(response.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0),
    }
  }
}
