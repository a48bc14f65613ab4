import { createHmac, timingSafeEqual } from 'node:crypto'
import { HttpError } from '../http/errors.ts'
import type { RejectedState } from '../ingest/rejected.ts'
import type { DuplicateField } from './store.ts'

/**
 * Opaque page cursors: base64url JSON of the page's last sort key, signed with an HMAC so a
 * client can neither build nor edit one (an edited cursor is a 400, not a silently different
 * page). The signing key is derived from a service secret, so every replica accepts them.
 */
export class CursorCodec {
  private readonly key: Buffer

  constructor(secret: Buffer) {
    this.key = createHmac('sha256', secret).update('login-ingest/cursor/v1').digest()
  }

  encode(kind: string, values: readonly (string | number)[]): string {
    const body = Buffer.from(JSON.stringify([kind, ...values]), 'utf8').toString('base64url')
    return `${body}.${this.sign(body)}`
  }

  /** The values of a cursor of this kind, or null when it is malformed, of another kind, or edited. */
  decode(kind: string, cursor: string): unknown[] | null {
    const match = /^([A-Za-z0-9_-]{1,800})\.([A-Za-z0-9_-]{22})$/.exec(cursor)
    if (match === null) return null
    const [, body = '', mac = ''] = match
    if (!timingSafeEqual(Buffer.from(this.sign(body)), Buffer.from(mac))) return null
    try {
      const parsed = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as unknown
      if (!Array.isArray(parsed) || parsed[0] !== kind) return null
      return parsed.slice(1)
    } catch {
      return null
    }
  }

  private sign(body: string): string {
    return createHmac('sha256', this.key).update(body).digest().subarray(0, 16).toString('base64url')
  }
}

/** A positive bigint id as written in a cursor or a path, or null. */
export function parseId(text: unknown): bigint | null {
  if (typeof text !== 'string' || !/^[1-9]\d{0,18}$/.test(text)) return null
  const id = BigInt(text)
  return id <= 9_223_372_036_854_775_807n ? id : null
}

/** The cursor of one kind of page: what the page's last row puts in it, and what a valid one gives back. */
export interface PageCursor<Last, Value> {
  encode(last: Last): string
  /** the value of a cursor this API issued for this kind of page, or null */
  decode(text: string): Value | null
  /**
   * The `cursor` parameter of a request: undefined when absent, its value when this API issued it
   * for this page (and `accept` takes it), else the 400 every paged route answers.
   */
  read(text: string | undefined, accept?: (value: Value) => boolean): Value | undefined
}

/** A kind of cursor: its name in the signed body, the page named in the 400, and its values. */
export function pageCursor<Last, Value>(
  codec: CursorCodec,
  kind: string,
  spec: { page: string; encode(last: Last): (string | number)[]; decode(values: unknown[]): Value | null },
): PageCursor<Last, Value> {
  const decode = (text: string): Value | null => {
    const values = codec.decode(kind, text)
    return values === null ? null : spec.decode(values)
  }
  return {
    encode: (last) => codec.encode(kind, spec.encode(last)),
    decode,
    read(text, accept) {
      if (text === undefined) return undefined
      const value = decode(text)
      if (value === null || (accept !== undefined && !accept(value))) {
        throw new HttpError(400, `querystring/cursor is not a cursor this API issued for ${spec.page}`)
      }
      return value
    },
  }
}

const REJECTED_STATES: readonly unknown[] = ['pending', 'resubmitted', 'all'] satisfies RejectedState[]
const DUPLICATE_FIELDS: readonly unknown[] = ['ip', 'device_id', 'ip_network'] satisfies DuplicateField[]

/** The sort key after which a page of GET /logins/duplicates goes on. */
export interface DuplicateKey {
  count: number
  field: DuplicateField
  masked_value: string
}

/**
 * The cursors of every paged route, signed with one secret. The id pages carry the last row id
 * (the next page is `before` it); /rejected also its state, since a page of another state would
 * skip or repeat rows.
 */
export function pageCursors(secret: Buffer) {
  const codec = new CursorCodec(secret)
  const byId = (page: string) => ({ page, encode: (lastId: string) => [lastId], decode: ([id]: unknown[]) => parseId(id) })
  return {
    logins: pageCursor(codec, 'logins', byId('/logins')),
    audit: pageCursor(codec, 'audit', byId('/audit')),
    rejected: pageCursor(codec, 'rejected', {
      page: '/rejected with this state',
      encode: (last: { id: string; state: RejectedState }) => [last.id, last.state],
      decode: ([id, state]) => {
        const before = parseId(id)
        return before === null || !REJECTED_STATES.includes(state) ? null : { before, state: state as RejectedState }
      },
    }),
    duplicates: pageCursor(codec, 'duplicates', {
      page: '/logins/duplicates',
      encode: (last: DuplicateKey) => [last.count, last.field, last.masked_value],
      decode: ([count, field, masked_value]): DuplicateKey | null =>
        typeof count === 'number' && DUPLICATE_FIELDS.includes(field) && typeof masked_value === 'string'
          ? { count, field: field as DuplicateField, masked_value }
          : null,
    }),
  }
}

export type PageCursors = ReturnType<typeof pageCursors>
