import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { mkdir, readFile, rename, unlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

/**
 * One process per DATA_DIR. PGlite's files and the generated secrets there belong to one
 * process at a time: two `npm start` on one folder handed out the same ids to different rows,
 * and one process's rows were lost at the next start. A lock file holds the owner's pid; a
 * lock whose pid no longer runs (kill -9, a crash, a reboot) is taken over.
 */
export class DataDirLockedError extends Error {
  readonly code = 'DATA_DIR_LOCKED'
  constructor(
    readonly dataDir: string,
    readonly owner: LockOwner,
  ) {
    super(
      `DATA_DIR ${dataDir} is in use by process ${owner.pid} (${owner.command}, since ${owner.startedAt}): ` +
        'stop it first, or set DATA_DIR to another folder',
    )
  }
}

export interface LockOwner {
  pid: number
  command: string
  startedAt: string
  /** random per acquisition, so a release never removes another process's lock */
  token: string
}

export interface DataDirLock {
  readonly path: string
  release(): Promise<void>
}

const LOCK_FILE = 'lock.json'
const RUNTIME_FILE = 'runtime.json'

/** Takes DATA_DIR for `command` (e.g. "npm start"), or throws DataDirLockedError naming its owner. */
export async function lockDataDir(dataDir: string, command: string): Promise<DataDirLock> {
  await mkdir(dataDir, { recursive: true })
  const path = join(dataDir, LOCK_FILE)
  const mine: LockOwner = { pid: process.pid, command, startedAt: new Date().toISOString(), token: randomUUID() }
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      await writeFile(path, `${JSON.stringify(mine)}\n`, { flag: 'wx', mode: 0o600 })
      return {
        path,
        async release() {
          const owner = await readOwner(path)
          if (owner?.token === mine.token) await unlink(path).catch(() => {})
        },
      }
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
    }
    const owner = await readOwner(path)
    if (owner !== null && isRunning(owner.pid)) throw new DataDirLockedError(dataDir, owner)
    // Stale (its process is gone) or unreadable (killed while writing it): move it aside, so
    // that of two processes taking over the same stale lock only one removes it, then retry.
    await rename(path, `${path}.stale-${mine.token}`).then(
      () => unlink(`${path}.stale-${mine.token}`).catch(() => {}),
      () => {},
    )
  }
  throw new Error(`could not take the lock ${path}`)
}

async function readOwner(path: string): Promise<LockOwner | null> {
  try {
    const owner = JSON.parse(await readFile(path, 'utf8')) as Partial<LockOwner>
    return typeof owner.pid === 'number' && typeof owner.token === 'string' ? (owner as LockOwner) : null
  } catch {
    return null
  }
}

/** Whether `pid` is a live process other than this one that could be ours (a Node.js process). */
function isRunning(pid: number): boolean {
  if (pid === process.pid) return false // our own earlier life, e.g. pid 1 in a restarted container
  try {
    process.kill(pid, 0)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false
  }
  // A recycled pid: where /proc exists, a process that is not Node.js is not the owner.
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('node')
  } catch {
    return true
  }
}

/** Where the running service can be reached; written by `npm start` into DATA_DIR for the CLIs. */
export interface RuntimeInfo {
  pid: number
  startedAt: string
  /** the HTTP API, e.g. http://127.0.0.1:3000 */
  api: string
  /** the embedded queue, when the service runs one */
  queue: { endpoint: string; queueUrl: string; dlqUrl: string; localstackUrl: string } | null
  /** whether the database is the embedded PGlite (then only the service can open it) */
  embeddedDatabase: boolean
}

export async function writeRuntimeInfo(dataDir: string, info: RuntimeInfo): Promise<void> {
  const path = join(dataDir, RUNTIME_FILE)
  const temporary = `${path}.${process.pid}.tmp`
  await writeFile(temporary, `${JSON.stringify(info, null, 2)}\n`, { mode: 0o600 })
  await rename(temporary, path)
}

export async function removeRuntimeInfo(dataDir: string): Promise<void> {
  const info = await readRuntimeFile(dataDir)
  if (info?.pid === process.pid) await unlink(join(dataDir, RUNTIME_FILE)).catch(() => {})
}

/** The running service's addresses, or null when no service runs on this DATA_DIR. */
export async function readRuntimeInfo(dataDir: string): Promise<RuntimeInfo | null> {
  const info = await readRuntimeFile(dataDir)
  return info !== null && info.pid !== process.pid && isRunning(info.pid) ? info : null
}

async function readRuntimeFile(dataDir: string): Promise<RuntimeInfo | null> {
  try {
    return JSON.parse(await readFile(join(dataDir, RUNTIME_FILE), 'utf8')) as RuntimeInfo
  } catch {
    return null
  }
}
