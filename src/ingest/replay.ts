import { DeleteMessageBatchCommand, ReceiveMessageCommand, SendMessageBatchCommand, type SQSClient } from '@aws-sdk/client-sqs'

export interface ReplayReport {
  /** messages waiting in the dead-letter queue when the replay began (approximate) */
  waiting: number
  moved: number
  failed: number
  dryRun: boolean
}

/**
 * Moves messages from the dead-letter queue back to the main queue, in batches of ten: send
 * to the main queue first, then delete from the DLQ only what was sent, so a failure leaves a
 * message in one queue or (rarely) both, never in neither. A copy in both is harmless: it gets a
 * new message id, and its original was never stored (that is why it reached the DLQ).
 */
export async function replayDeadLetters(
  client: SQSClient,
  options: { dlqUrl: string; queueUrl: string; limit: number; dryRun: boolean; depth: () => Promise<number> },
): Promise<ReplayReport> {
  const waiting = await options.depth()
  const report: ReplayReport = { waiting, moved: 0, failed: 0, dryRun: options.dryRun }
  if (options.dryRun) {
    report.moved = Math.min(waiting, options.limit)
    return report
  }
  while (report.moved + report.failed < options.limit) {
    const received = await client.send(new ReceiveMessageCommand({
      QueueUrl: options.dlqUrl,
      MaxNumberOfMessages: Math.min(10, options.limit - report.moved - report.failed),
      WaitTimeSeconds: 1,
      VisibilityTimeout: 60,
      MessageAttributeNames: ['All'],
    }))
    const messages = received.Messages ?? []
    if (messages.length === 0) break
    const sent = await client.send(new SendMessageBatchCommand({
      QueueUrl: options.queueUrl,
      Entries: messages.map((m, i) => ({
        Id: String(i),
        MessageBody: m.Body ?? '',
        ...(m.MessageAttributes ? { MessageAttributes: m.MessageAttributes } : {}),
      })),
    }))
    const ok = new Set((sent.Successful ?? []).map((s) => Number(s.Id)))
    report.failed += messages.length - ok.size
    const toDelete = messages.filter((_, i) => ok.has(i))
    if (toDelete.length > 0) {
      const deleted = await client.send(new DeleteMessageBatchCommand({
        QueueUrl: options.dlqUrl,
        Entries: toDelete.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle })),
      }))
      report.moved += deleted.Successful?.length ?? 0
      report.failed += deleted.Failed?.length ?? 0
    }
  }
  return report
}
