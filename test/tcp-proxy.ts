import { createConnection, createServer, type Server, type Socket } from 'node:net'

/**
 * A loopback TCP proxy in front of a dependency (the database, the queue), so that a test can
 * take it away and bring it back:
 * - `cut()` resets every open connection and stops listening, so new connections are refused
 *   (ECONNREFUSED), as when the database server is stopped; it resolves a moment later, once
 *   the clients of this process have seen their resets;
 * - `stall()` keeps connections open but forwards nothing (a hung peer, a black-holed network);
 * - `restore()` listens and forwards again on the same port (stalled bytes are then delivered).
 */
export interface TcpProxy {
  /** port the proxy listens on, on 127.0.0.1; the same after a cut */
  port: number
  /** `url` with its host and port replaced by the proxy's */
  via(url: string): string
  readonly mode: 'open' | 'cut' | 'stalled'
  /** connections accepted since the start */
  readonly connections: number
  /** `settleMs`: how long to wait after the resets before resolving (0: at once) */
  cut(settleMs?: number): Promise<void>
  stall(): void
  restore(): Promise<void>
  close(): Promise<void>
}

interface Pair {
  client: Socket
  upstream: Socket
  /** bytes held while stalled, per direction */
  held: { up: Buffer[]; down: Buffer[] }
}

export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const pairs = new Set<Pair>()
  let mode: TcpProxy['mode'] = 'open'
  let connections = 0
  let server: Server | null = null

  const drop = (pair: Pair, reset = false): void => {
    pairs.delete(pair)
    if (reset && !pair.client.destroyed) pair.client.resetAndDestroy()
    else pair.client.destroy()
    pair.upstream.destroy()
  }

  const accept = (client: Socket): void => {
    connections++
    const upstream = createConnection({ host: target.host, port: target.port })
    const pair: Pair = { client, upstream, held: { up: [], down: [] } }
    pairs.add(pair)
    client.on('data', (chunk: Buffer) => {
      if (mode === 'stalled') pair.held.up.push(chunk)
      else upstream.write(chunk)
    })
    upstream.on('data', (chunk: Buffer) => {
      if (mode === 'stalled') pair.held.down.push(chunk)
      else client.write(chunk)
    })
    for (const socket of [client, upstream]) {
      socket.on('error', () => drop(pair))
      socket.on('close', () => drop(pair))
    }
  }

  const listen = async (port: number): Promise<number> => {
    const next = createServer(accept)
    await new Promise<void>((resolve, reject) => {
      next.once('error', reject)
      next.listen(port, '127.0.0.1', () => {
        next.off('error', reject)
        resolve()
      })
    })
    server = next
    const address = next.address()
    if (address === null || typeof address === 'string') throw new Error('proxy did not get a TCP port')
    return address.port
  }

  const stopListening = async (): Promise<void> => {
    const current = server
    server = null
    if (current === null) return
    const closed = new Promise<void>((resolve) => current.close(() => resolve()))
    for (const pair of [...pairs]) drop(pair, true)
    await closed
  }

  const port = await listen(0)

  return {
    port,
    via(url: string): string {
      const parsed = new URL(url)
      parsed.hostname = '127.0.0.1'
      parsed.port = String(port)
      return parsed.toString()
    },
    get mode() {
      return mode
    },
    get connections() {
      return connections
    },
    async cut(settleMs = 100) {
      mode = 'cut'
      await stopListening()
      // Let the clients in this process see their resets before the test goes on.
      if (settleMs > 0) await new Promise((resolve) => setTimeout(resolve, settleMs))
    },
    stall() {
      if (mode === 'open') mode = 'stalled'
    },
    async restore() {
      if (mode === 'cut') await listen(port)
      mode = 'open'
      for (const pair of pairs) {
        for (const chunk of pair.held.up.splice(0)) pair.upstream.write(chunk)
        for (const chunk of pair.held.down.splice(0)) pair.client.write(chunk)
      }
    },
    async close() {
      mode = 'cut'
      await stopListening()
    },
  }
}

/** Host and port of a postgres:// or http:// URL, for `startTcpProxy`. */
export function targetOf(url: string): { host: string; port: number } {
  const parsed = new URL(url)
  const port = parsed.port !== '' ? Number(parsed.port) : parsed.protocol.startsWith('postgres') ? 5432 : parsed.protocol === 'https:' ? 443 : 80
  return { host: parsed.hostname === 'localhost' ? '127.0.0.1' : parsed.hostname, port }
}
