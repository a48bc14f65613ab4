import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { sendError } from '../http/errors.ts'
import { hasUndecodablePath } from '../http/url.ts'

interface ParameterSchema {
  type?: string
  items?: { type?: string }
}

const DECIMAL = /^[0-9]+$/

/**
 * Checks of raw input that run after authentication and before validation:
 * - a path that is not UTF-8 (kept as sent by rewriteUrl) is refused with 400;
 * - a query integer is written in decimal digits: Ajv's coercion would take `0x10`, `1e3` or
 *   ` 10` as numbers, while the document keeps `type: integer` for generated clients.
 */
export default fp(
  async function inputPlugin(app: FastifyInstance) {
    app.addHook('preValidation', async (request, reply) => {
      if (hasUndecodablePath(request.raw)) return sendError(reply, 400, 'the path is not valid percent-encoded UTF-8')
      const schema = request.routeOptions.schema?.querystring as { properties?: Record<string, ParameterSchema> } | undefined
      const query = request.query as Record<string, unknown> | undefined
      if (schema?.properties === undefined || query === undefined || query === null) return
      for (const [name, property] of Object.entries(schema.properties)) {
        if (property.type !== 'integer' && property.items?.type !== 'integer') continue
        const value = query[name]
        if (value === undefined) continue
        if (![value].flat().every((v) => typeof v === 'string' && DECIMAL.test(v))) {
          return sendError(reply, 400, `querystring/${name.slice(0, 64)} must be an integer written in decimal digits`)
        }
      }
    })
  },
  { name: 'input' },
)
