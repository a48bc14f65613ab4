import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { sendError } from '../../src/http/errors.ts'
import { encodeAppVersion } from '../../src/ingest/app-version.ts'
import { listLogins } from '../../src/logins/store.ts'
import { parsePseudonymNetwork } from '../../src/pii/ip-prefix.ts'
import { Cursor, Limit, authErrors } from '../../src/schemas/common.ts'

const Version = (description: string) => Type.String({ maxLength: 64, description, examples: ['2.3.0'] })

export const LoginsQuery = Type.Object(
  {
    limit: Limit,
    cursor: Type.Optional(Cursor),
    user_id: Type.Optional(Type.String({ minLength: 1, maxLength: 128, examples: ['424cdd21-063a-43a7-b91b-7ca1a833afae'] })),
    device_type: Type.Optional(Type.String({ minLength: 1, maxLength: 32, examples: ['android'] })),
    locale: Type.Optional(Type.String({ minLength: 1, maxLength: 32, examples: ['RU'] })),
    masked_ip: Type.Optional(Type.String({ minLength: 1, maxLength: 256, description: 'exact mask, as shown in masked_ip' })),
    masked_device_id: Type.Optional(Type.String({ minLength: 1, maxLength: 256, description: 'exact mask, as shown in masked_device_id' })),
    app_version: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'the version text exactly as sent', examples: ['2.3.0'] })),
    version_min: Type.Optional(Version('lowest version, inclusive, compared through the integer encoding (so 2.20 > 2.3)')),
    version_max: Type.Optional(Version('highest version, inclusive, compared through the integer encoding')),
    date_from: Type.Optional(Type.String({ format: 'date', description: 'first create_date, inclusive (YYYY-MM-DD)' })),
    date_to: Type.Optional(Type.String({ format: 'date', description: 'last create_date, inclusive (YYYY-MM-DD)' })),
    ip_network: Type.Optional(Type.String({
      minLength: 1,
      maxLength: 128,
      description: 'rows whose masked_ip_prefix lies in this network of pseudonyms: <pseudonym>/<bits> (IPv4 8-32, IPv6 16-128), ' +
        'optionally <key id>:<pseudonym>/<bits> as GET /logins/duplicates?field=ip_network prints it; needs IP_PREFIX_KEYS',
      examples: ['19.214.210.0/24'],
    })),
  },
  { additionalProperties: false },
)

const logins: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/logins', {
    ...app.apiAccess('logins:read'),
    schema: {
      operationId: 'listLogins',
      tags: ['logins'],
      summary: 'List masked logins, newest first, with filters',
      description:
        'Keyset-paged by id: follow `next` until it is null. A walk sees every row that existed when it began exactly once, ' +
        'even while new rows arrive. Filters combine with AND. Never returns the original ip or device_id.',
      querystring: LoginsQuery,
      response: { 200: Type.Ref('LoginPage'), ...authErrors },
    },
  }, async (request, reply) => {
    const { limit, cursor, version_min, version_max, ip_network, ...filters } = request.query
    const before = app.services.cursors.logins.read(cursor)
    const versions: { version_min?: number; version_max?: number } = {}
    for (const [name, text] of [['version_min', version_min], ['version_max', version_max]] as const) {
      if (text === undefined) continue
      const encoded = encodeAppVersion(text)
      if (encoded === null) return sendError(reply, 400, `querystring/${name} must be a dotted version such as 2.3.0 (parts 0-999)`)
      versions[name] = encoded
    }
    let network: { keyId: string; first: string; last: string } | undefined
    if (ip_network !== undefined) {
      const prefixer = app.services.ipPrefixer
      if (prefixer === null) return sendError(reply, 400, 'querystring/ip_network needs IP_PREFIX_KEYS, which this service is not configured with')
      const parsed = parsePseudonymNetwork(ip_network, prefixer)
      if (typeof parsed === 'string') return sendError(reply, 400, `querystring/ip_network ${parsed}`)
      network = { keyId: parsed.keyId, first: parsed.first, last: parsed.last }
    }
    const page = await app.dbRead(listLogins(app.services.sql, {
      limit, ...filters, ...versions, ...(before === undefined ? {} : { before }), ...(network === undefined ? {} : { ip_network: network }),
    }))
    return { items: page.items, next: page.lastId === null ? null : app.services.cursors.logins.encode(page.lastId) }
  })
}

export default logins
