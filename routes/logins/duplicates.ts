import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { Sql } from 'postgres'
import { Type } from 'typebox'
import { sendError } from '../../src/http/errors.ts'
import { listDuplicates, listDuplicatesWithPending, type Duplicate as DuplicateRow, type DuplicateQuery } from '../../src/logins/store.ts'
import { READ_FOLD_LIMIT, type SummaryRefresher, refreshDuplicates } from '../../src/logins/summary.ts'
import { NETWORK_BITS } from '../../src/pii/ip-prefix.ts'
import { Cursor, Limit, NextCursor, Nullable, authErrors } from '../../src/schemas/common.ts'

const Duplicate = Type.Object({
  field: Type.Union([Type.Literal('ip'), Type.Literal('device_id'), Type.Literal('ip_network')]),
  masked_value: Type.String({ description: 'the mask; for ip_network, <key id>:<network of pseudonyms>/<bits>, usable as GET /logins?ip_network=' }),
  count: Type.Integer({ description: 'rows with this masked value' }),
  users: Type.Integer({ description: 'distinct user_id among them' }),
  first_seen: Nullable(Type.String({ format: 'date' }), { description: 'earliest create_date among them (null when none has one)' }),
  last_seen: Nullable(Type.String({ format: 'date' }), { description: 'latest create_date among them' }),
})

/**
 * The exact-mask report, caught up first, boundedly: the report's statement also counts what is
 * pending; at most READ_FOLD_LIMIT changes (about a second of ingestion) are folded and the report
 * read again, a larger backlog (a bulk load, a rotation's switch) is the worker's to fold, and the
 * report is as of the last fold until then.
 */
async function caughtUpReport(sql: Sql, background: SummaryRefresher, query: Omit<DuplicateQuery, 'networks'>): Promise<DuplicateRow[]> {
  const first = await listDuplicatesWithPending(sql, query, READ_FOLD_LIMIT)
  if (first.pending === 0) return first.rows
  if (first.pending > READ_FOLD_LIMIT) {
    background.kick()
    return first.rows
  }
  await refreshDuplicates(sql, { wait: true })
  return listDuplicates(sql, query)
}

const duplicates: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/logins/duplicates', {
    ...app.apiAccess('logins:read'),
    schema: {
      operationId: 'listDuplicates',
      tags: ['logins'],
      summary: 'Masked ips and device ids seen more than once',
      description: 'Most frequent first, then by field and value; paged with `next`. ip and device_id are read from a summary kept by ' +
        'the service (folded after each stored batch and caught up before each read; see docs/scaling.md). With field=ip_network (needs IP_PREFIX_KEYS): ' +
        'networks of prefix-preserving ip pseudonyms, `bits` long, seen with more than one user.',
      querystring: Type.Object(
        {
          field: Type.Union([Type.Literal('ip'), Type.Literal('device_id'), Type.Literal('all'), Type.Literal('ip_network')], {
            default: 'all',
            description: 'all = ip and device_id; ip_network is reported on its own',
            examples: ['ip'],
          }),
          bits: Type.Optional(Type.Integer({
            minimum: 8,
            maximum: 128,
            description: 'with field=ip_network: network prefix length (IPv4 8-32, IPv6 16-128); default 24; ignored for the other fields',
            examples: [24],
          })),
          family: Type.Optional(Type.Union([Type.Literal(4), Type.Literal(6)], {
            description: 'with field=ip_network: IPv4 or IPv6 networks; default 4 when bits <= 32, 6 otherwise; ignored for the other fields',
          })),
          min_count: Type.Integer({ minimum: 2, maximum: 1_000_000, default: 2, description: 'least number of rows', examples: [2] }),
          limit: Limit,
          cursor: Type.Optional(Cursor),
        },
        { additionalProperties: false },
      ),
      response: {
        200: Type.Object({ items: Type.Array(Duplicate), next: NextCursor }),
        ...authErrors,
      },
    },
  }, async (request, reply) => {
    const { field, min_count, limit, cursor, bits, family } = request.query
    const fields: DuplicateQuery['fields'] = field === 'all' ? ['device_id', 'ip'] : field === 'ip_network' ? [] : [field]
    let networks: DuplicateQuery['networks']
    if (field === 'ip_network') {
      const prefixer = app.services.ipPrefixer
      if (prefixer === null) return sendError(reply, 400, 'querystring/field ip_network needs IP_PREFIX_KEYS, which this service is not configured with')
      const length = bits ?? 24
      const ipFamily = family ?? (length <= 32 ? 4 : 6)
      const range = NETWORK_BITS[ipFamily]
      if (length < range.min || length > range.max) {
        return sendError(reply, 400, `querystring/bits must be from ${range.min} to ${range.max} for IPv${ipFamily} networks`)
      }
      networks = { keyId: prefixer.keyId, family: ipFamily, bits: length }
    }
    const after = app.services.cursors.duplicates.read(cursor)
    const rows = await app.dbRead(networks === undefined
      ? caughtUpReport(app.services.sql, app.duplicatesSummary, { fields, minCount: min_count, limit, ...(after ? { after } : {}) })
      : listDuplicates(app.services.sql, { fields, minCount: min_count, limit, networks, ...(after ? { after } : {}) }))
    const items = rows.slice(0, limit)
    const last = items.at(-1)
    const next = rows.length > limit && last ? app.services.cursors.duplicates.encode(last) : null
    return { items, next }
  })
}

export default duplicates
