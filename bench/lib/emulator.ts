/**
 * The SQS emulator (fauxqs) in a process of its own, so that its CPU is not the service's nor
 * the bench's, as a real queue's would not be. Prints one JSON line with its address, then
 * serves until its standard input closes or it gets SIGTERM.
 */
import { startLoopbackEmulator } from '../../src/embedded/queue.ts'

const server = await startLoopbackEmulator()
process.stdout.write(`${JSON.stringify({ address: server.endpoint })}\n`)

let stopping = false
const stop = (): void => {
  if (stopping) return
  stopping = true
  server.close().then(() => process.exit(0), () => process.exit(1))
}
process.stdin.on('end', stop)
process.stdin.on('close', stop)
process.stdin.resume()
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
