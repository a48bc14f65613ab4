import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { createInterface } from 'node:readline'

/** Clock ticks per second of /proc/<pid>/stat times (100 on every Linux we run on; asked anyway). */
const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
  } catch {
    return 100
  }
})()

/** User + system CPU seconds a process has used so far, all its threads included (Linux /proc). */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // Fields after the command name, which is in parentheses and may contain spaces.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS
}

/** Current and peak resident set size of a process, in MiB (VmRSS and VmHWM of /proc/<pid>/status). */
export function memoryMiB(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN)
  return { rss: kb('VmRSS') / 1024, peak: kb('VmHWM') / 1024 }
}

/** A TCP port that was free a moment ago, for a child that must listen on a known port. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => (typeof address === 'object' && address !== null ? resolve(address.port) : reject(new Error('no port'))))
    })
  })
}

export interface Child {
  process: ChildProcess
  pid: number
  /** the last lines it wrote to stdout and stderr, to explain a failure */
  tail(): string
  /** resolves with the first stdout line for which `match` returns a value */
  line<T>(match: (line: string) => T | undefined, timeoutMs?: number): Promise<T>
  /** SIGTERM (then SIGKILL after `graceMs`), resolving with the exit code */
  stop(graceMs?: number): Promise<number | null>
  exited: Promise<number | null>
}

/** Children still running, stopped by `stopAll` when the bench ends or is interrupted. */
const running = new Set<Child>()

/** Starts `node <args>` with stdout/stderr read line by line (never left to fill a pipe). */
export function spawnNode(args: readonly string[], env: NodeJS.ProcessEnv, options: { cwd?: string } = {}): Child {
  const proc = spawn(process.execPath, args, { cwd: options.cwd ?? process.cwd(), env, stdio: ['pipe', 'pipe', 'pipe'] })
  if (proc.pid === undefined) throw new Error(`could not start node ${args.join(' ')}`)
  const lines: string[] = []
  const waiters = new Set<(line: string) => void>()
  const keep = (line: string): void => {
    lines.push(line)
    if (lines.length > 40) lines.shift()
  }
  createInterface({ input: proc.stdout }).on('line', (line) => {
    keep(line)
    for (const waiter of waiters) waiter(line)
  })
  createInterface({ input: proc.stderr }).on('line', keep)
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)))
  const child: Child = {
    process: proc,
    pid: proc.pid,
    exited,
    tail: () => lines.join('\n'),
    line: <T>(match: (line: string) => T | undefined, timeoutMs = 60_000) =>
      new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => done(new Error(`timed out after ${timeoutMs} ms waiting for node ${args.join(' ')}:\n${child.tail()}`)), timeoutMs)
        const waiter = (line: string): void => {
          const value = match(line)
          if (value !== undefined) done(null, value)
        }
        const done = (error: Error | null, value?: T): void => {
          clearTimeout(timer)
          waiters.delete(waiter)
          if (error) reject(error)
          else resolve(value as T)
        }
        waiters.add(waiter)
        void exited.then((code) => done(new Error(`node ${args.join(' ')} exited (${code}) early:\n${child.tail()}`)))
      }),
    stop: async (graceMs = 30_000) => {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM')
        const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs)
        await exited
        clearTimeout(timer)
      }
      running.delete(child)
      return proc.exitCode
    },
  }
  running.add(child)
  void exited.then(() => running.delete(child))
  return child
}

export async function stopAll(): Promise<void> {
  await Promise.allSettled([...running].map((child) => child.stop(5_000)))
}

/** Parses a stdout line as JSON, or undefined. */
export function jsonLine<T = Record<string, unknown>>(line: string): T | undefined {
  if (!line.startsWith('{')) return undefined
  try {
    return JSON.parse(line) as T
  } catch {
    return undefined
  }
}
