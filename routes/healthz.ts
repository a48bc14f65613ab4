import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'

/** Liveness: the process answers. Checks nothing else, so a database outage never restarts pods. */
const healthz: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/healthz', {
    schema: {
      operationId: 'getHealth',
      tags: ['operations'],
      summary: 'Liveness probe',
      description: 'Answers 200 while the process can serve requests.',
      response: { 200: Type.Object({ status: Type.Literal('ok') }) },
    },
  }, async () => ({ status: 'ok' as const }))
}

export default healthz
