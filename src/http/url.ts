import type { IncomingMessage } from 'node:http'

const UNDECODABLE = Symbol('path not UTF-8')

/**
 * Fastify's rewriteUrl: a path whose percent-encoding is not UTF-8 (`/users/%ED%A0%80/pii`)
 * would be answered 400 by the router itself, before any route hook, so without
 * authentication, audit or our error shape. Its segments that do not decode get their `%`
 * escaped instead, so the route sees the text as sent, and the request is marked for a 400
 * after authentication (see `hasUndecodablePath`).
 */
export function rewriteUndecodablePath(req: IncomingMessage): string {
  const url = req.url ?? '/'
  if (!url.includes('%')) return url
  const cut = url.indexOf('?')
  const path = cut === -1 ? url : url.slice(0, cut)
  let changed = false
  const segments = path.split('/').map((segment) => {
    try {
      decodeURIComponent(segment)
      return segment
    } catch {
      changed = true
      return segment.replaceAll('%', '%25')
    }
  })
  if (!changed) return url
  ;(req as IncomingMessage & { [UNDECODABLE]?: true })[UNDECODABLE] = true
  return segments.join('/') + (cut === -1 ? '' : url.slice(cut))
}

export const hasUndecodablePath = (req: IncomingMessage): boolean =>
  (req as IncomingMessage & { [UNDECODABLE]?: true })[UNDECODABLE] === true
