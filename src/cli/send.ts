// Sends login events to the configured queue: a JSON or NDJSON file, or generated events (see --help).
import { readFile } from 'node:fs/promises'
import { SendMessageBatchCommand } from '@aws-sdk/client-sqs'
import cliProgress from 'cli-progress'
import { parseLoginMessage } from '../ingest/message.ts'
import { generateLogins } from './generate.ts'
import { CliError, UsageError, cliConfig, describe, integerOption, parseCli, resolveQueue, runCli, type CliQueue } from './common.ts'

const USAGE = `
usage: npm run send -- FILE [--skip-invalid]
       npm run send -- --generate N [--repeat SHARE] [--seed TEXT]

Sends login events to the queue, 10 per SendMessageBatch, with a progress bar on a terminal
and a summary line at the end (sent, failed, queue URL).

  FILE              a JSON file (an array of events, or one event) or NDJSON (one JSON
                    object a line). Every record is checked with the service's own rules:
                    a file with no login event at all is refused; records that are not login
                    events are sent anyway (the service records them as rejected messages, see
                    npm run rejected) and counted on stderr, unless --skip-invalid
  --skip-invalid    leave out the records that are not login events
  --generate N      N realistic events (1-10000000) like the exercise's samples
  --repeat SHARE    share (0-1, default 0) of generated events that reuse the ip and
                    device_id of an event generated before, so GET /logins/duplicates has hits
  --seed TEXT       the same seed generates the same events
  -h, --help        this text

The queue: SQS_QUEUE_URL (with AWS_ENDPOINT_URL and the AWS SDK's credentials), else the
embedded queue of the service running on DATA_DIR (npm start). Exit codes: 0 all sent, 1 a
message or the queue failed (the line says how many were sent before), 2 wrong command line.
`

/** SendMessageBatch calls in flight at once. */
const PARALLEL_BATCHES = 4

await runCli('send', async () => {
  const { values, positionals } = parseCli({
    name: 'send',
    usage: USAGE,
    allowPositionals: true,
    options: {
      generate: { type: 'string' },
      repeat: { type: 'string' },
      seed: { type: 'string' },
      'skip-invalid': { type: 'boolean', default: false },
    },
  })
  if (positionals.length > 1) throw new UsageError(`one FILE at most (got ${positionals.length})`)
  const file = positionals[0]
  const count = integerOption('generate', values.generate, { max: 10_000_000 })
  if ((file === undefined) === (count === undefined)) throw new UsageError('give a FILE or --generate N (see npm run send -- --help)')
  if (count === undefined && (values.repeat !== undefined || values.seed !== undefined)) throw new UsageError('--repeat and --seed belong to --generate')
  if (count !== undefined && values['skip-invalid']) throw new UsageError('--skip-invalid belongs to FILE')
  let repeat = 0
  if (values.repeat !== undefined) {
    repeat = /^(0(\.\d+)?|1(\.0+)?|\.\d+)$/.test(values.repeat) ? Number(values.repeat) : Number.NaN
    if (!(repeat >= 0 && repeat <= 1)) throw new UsageError('--repeat must be a number from 0 to 1, e.g. 0.3')
  }

  let bodies: Iterable<string>
  let total: number
  if (file !== undefined) {
    const records = await readRecords(file)
    const problems = records.flatMap((body, index) => {
      const parsed = parseLoginMessage(body)
      return parsed.ok ? [] : [{ index, reason: parsed.reason }]
    })
    const first = problems[0]
    if (problems.length === records.length) {
      throw new CliError(`${file} holds no login events: none of its ${records.length} records is one (record ${(first?.index ?? 0) + 1}: ${first?.reason})`)
    }
    if (first !== undefined) {
      const what = `${problems.length} of ${records.length} records in ${file} are not login events (first: record ${first.index + 1}: ${first.reason})`
      process.stderr.write(values['skip-invalid'] ? `${what}: left out\n` : `${what}: sent anyway, the service will record them as rejected (--skip-invalid leaves them out)\n`)
    }
    const invalid = new Set(problems.map((p) => p.index))
    const chosen = values['skip-invalid'] ? records.filter((_, i) => !invalid.has(i)) : records
    bodies = chosen
    total = chosen.length
  } else {
    total = count ?? 0
    bodies = (function* () {
      for (const login of generateLogins(total, { repeat, ...(values.seed === undefined ? {} : { seed: values.seed }) })) yield JSON.stringify(login)
    })()
  }

  const queue = await resolveQueue(cliConfig())
  try {
    await send(queue, bodies, total)
  } finally {
    queue.close()
  }
})

/** The records of a JSON or NDJSON file, each as the text of one message body. */
async function readRecords(file: string): Promise<string[]> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (error) {
    throw new CliError(`cannot read ${file}: ${describe(error)}`)
  }
  if (text.trim() === '') throw new CliError(`${file} is empty`)
  let whole: unknown
  let wholeError: string | null = null
  try {
    whole = JSON.parse(text)
  } catch (error) {
    wholeError = where(error)
  }
  if (wholeError === null) {
    const records = Array.isArray(whole) ? whole : [whole]
    if (records.length === 0) throw new CliError(`${file} holds an empty array: nothing to send`)
    return records.map((record) => JSON.stringify(record))
  }
  // Not one JSON document: NDJSON, one JSON value a line (blank lines skipped).
  const records: string[] = []
  const lines = text.split(/\r?\n/)
  for (const [index, line] of lines.entries()) {
    if (line.trim() === '') continue
    try {
      JSON.parse(line)
    } catch {
      // The parser's own message can quote the file's text (PII); say only where.
      throw new CliError(
        records.length === 0
          ? `${file} is neither JSON (${wholeError}) nor NDJSON (line ${index + 1} is not JSON)`
          : `${file} is not NDJSON: line ${index + 1} is not JSON (nothing was sent)`,
      )
    }
    records.push(line.trim())
  }
  return records
}

/** Where a JSON.parse error is, from its message, without the text it may quote. */
function where(error: unknown): string {
  const match = /at position (\d+)(?: \(line (\d+) column (\d+)\))?/.exec((error as Error).message)
  if (match?.[2] !== undefined) return `error at line ${match[2]} column ${match[3]}`
  return match === null ? 'not valid JSON' : `error at character ${match[1]}`
}

/** Sends the bodies 10 per call, a few calls side by side; stops at the first call that fails. */
async function send(queue: CliQueue, bodies: Iterable<string>, total: number): Promise<void> {
  const started = Date.now()
  const bar = process.stderr.isTTY
    ? new cliProgress.SingleBar(
      { stream: process.stderr, format: 'sending |{bar}| {value}/{total} | failed {failed} | {eta_formatted} left', hideCursor: true },
      cliProgress.Presets.shades_classic,
    )
    : null
  bar?.start(total, 0, { failed: 0 })
  let sent = 0
  let failed = 0
  let firstFailure: string | null = null
  let stoppedBy: unknown = null
  /** entries of the calls that threw: the queue may or may not have taken them */
  let uncertain = 0
  const iterator = bodies[Symbol.iterator]()
  const nextBatch = (): string[] => {
    const batch: string[] = []
    while (batch.length < 10) {
      const next = iterator.next()
      if (next.done === true) break
      batch.push(next.value)
    }
    return batch
  }
  const worker = async (): Promise<void> => {
    for (let batch = nextBatch(); batch.length > 0 && stoppedBy === null; batch = nextBatch()) {
      try {
        const response = await queue.client.send(new SendMessageBatchCommand({
          QueueUrl: queue.queueUrl,
          Entries: batch.map((body, i) => ({ Id: String(i), MessageBody: body })),
        }))
        const refused = response.Failed ?? []
        failed += refused.length
        sent += batch.length - refused.length
        firstFailure ??= refused[0]?.Code ?? null
      } catch (error) {
        stoppedBy ??= error
        uncertain += batch.length
      }
      bar?.update(sent + failed, { failed })
    }
  }
  try {
    await Promise.all(Array.from({ length: PARALLEL_BATCHES }, worker))
  } finally {
    bar?.stop()
  }
  if (stoppedBy !== null) {
    throw new CliError(
      `the queue ${queue.queueUrl} failed (${describe(stoppedBy)}): sent ${sent} of ${total} before it stopped` +
        `${failed > 0 ? `, ${failed} refused` : ''} (${uncertain} more were in the calls that failed: the queue may or may not have them)`,
    )
  }
  const seconds = ((Date.now() - started) / 1000).toFixed(1)
  console.log(`sent ${sent}, failed ${failed}, to ${queue.queueUrl} in ${seconds} s`)
  if (failed > 0) {
    process.stderr.write(`login-ingest send: the queue refused ${failed} of ${total} messages (first: ${firstFailure ?? 'no code'})\n`)
    process.exitCode = 1
  }
}
