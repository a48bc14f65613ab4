import { randomBytes, randomUUID } from 'node:crypto'
import type { TestContext } from 'node:test'
import assert from 'node:assert/strict'
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify'
import type { Sql } from 'postgres'
import { buildApp } from '../src/app.ts'
import { createSql } from '../src/db/sql.ts'
import type { QueueMessage } from '../src/ingest/queue.ts'
import { captureLogs, testConfig, testDatabase, testQueue, testServices, testApiKeys, type CapturedLogs, type TestServices } from './helper.ts'
import { startTcpProxy, targetOf, type TcpProxy } from './tcp-proxy.ts'
import type { LoginRecord } from './ingest-helpers.ts'

/*
 * Helpers of the route tests (routes-*.test.ts): logins with chosen values and SQS timestamps
 * fed through the real pipeline, a second app on the same services, and an app whose database
 * sits behind a TCP proxy the test can cut.
 */

/** A login body as a producer sends it; every field can be chosen. */
export type LoginBody = LoginRecord

/** A valid login with fresh, recognisable values (random user, ip and device id). */
export function loginBody(overrides: Partial<LoginBody> = {}): LoginBody {
  const b = randomBytes(4)
  return {
    user_id: randomUUID(),
    app_version: '2.3.0',
    device_type: 'android',
    ip: `${11 + (b[0] as number) % 200}.${b[1] as number}.${b[2] as number}.${1 + (b[3] as number) % 254}`,
    locale: 'RU',
    device_id: `dev-${randomBytes(6).toString('hex')}`,
    ...overrides,
  }
}

/** A message as the queue would hand it out, with a chosen SentTimestamp. */
export function queueMessage(body: string | LoginBody, sentAt: Date = new Date()): QueueMessage {
  return {
    messageId: randomUUID(),
    receiptHandle: `test-${randomBytes(8).toString('hex')}`,
    body: typeof body === 'string' ? body : JSON.stringify(body),
    sentAt,
    receiveCount: 1,
  }
}

/**
 * Runs the messages through the real pipeline in batches (no queue involved) and returns the
 * row id of each stored login by message id.
 */
export async function ingestMessages(services: TestServices, messages: readonly QueueMessage[], batch = 500): Promise<Map<string, string>> {
  for (let start = 0; start < messages.length; start += batch) {
    const outcome = await services.pipeline.process(messages.slice(start, start + batch))
    if (outcome.stored.length !== Math.min(batch, messages.length - start)) throw new Error('the pipeline did not store the whole batch')
  }
  const ids = messages.map((m) => m.messageId)
  const rows = await services.sql<{ id: string; message_id: string }[]>`
    SELECT id::text AS id, message_id FROM user_logins WHERE message_id = ANY(${ids}::text[])`
  return new Map(rows.map((r) => [r.message_id, r.id]))
}

/** Ingests the bodies with the given (or current) sent times; returns the row ids in the same order. */
export async function ingestBodies(services: TestServices, bodies: readonly LoginBody[], sentAt?: (i: number) => Date): Promise<string[]> {
  const messages = bodies.map((b, i) => queueMessage(b, sentAt?.(i) ?? new Date()))
  const ids = await ingestMessages(services, messages)
  return messages.map((m) => {
    const id = ids.get(m.messageId)
    if (id === undefined) throw new Error('a valid login got no row')
    return id
  })
}

export const bearer = (token: string, extra: Record<string, string> = {}): Record<string, string> => ({ authorization: `Bearer ${token}`, ...extra })

/** The error body every non-2xx answer carries. */
export function isErrorBody(response: LightMyRequestResponse): boolean {
  try {
    const body = response.json<Record<string, unknown>>()
    return typeof body.statusCode === 'number' && body.statusCode === response.statusCode && typeof body.error === 'string' && typeof body.message === 'string'
  } catch {
    return false
  }
}

/** Another instance of the app on the same services (same database and keys), e.g. with other limits. */
export async function siblingApp(t: TestContext, services: TestServices, env: Record<string, string> = {}): Promise<{ app: FastifyInstance; logs: CapturedLogs }> {
  const config = testConfig(env)
  const { logger, logs } = captureLogs(config)
  const app = await buildApp({ config, services, logger })
  t.after(() => app.close())
  await app.ready()
  return { app, logs }
}

/**
 * The real app whose database pool goes through a TCP proxy: `proxy.cut()` takes the database
 * away. On PGlite (one session) the helper's own connection is closed first.
 */
export async function proxiedApp(t: TestContext, env: Record<string, string> = {}): Promise<{
  app: FastifyInstance
  proxy: TcpProxy
  sql: Sql
  services: TestServices
  tokens: ReturnType<typeof testApiKeys>['tokens']
  queue: Awaited<ReturnType<typeof testQueue>>
}> {
  // after-hooks run in the order they are registered: the app stops before its pool, the pool
  // before the proxy, and all of them before the helpers drop the database and the emulator.
  const held: { app?: FastifyInstance; sql?: Sql; proxy?: TcpProxy } = {}
  t.after(async () => {
    await held.proxy?.restore()
    await held.app?.close()
    await held.sql?.end({ timeout: 1 })
    await held.proxy?.close()
  })
  const queue = await testQueue(t)
  const db = await testDatabase(t, { max: 2 })
  if (!db.server) await db.sql.end({ timeout: 1 })
  const proxy = (held.proxy = await startTcpProxy(targetOf(db.url)))
  const sql = (held.sql = createSql({ url: proxy.via(db.url), max: db.server ? 2 : 1, statementTimeoutMs: 0 }))
  const api = testApiKeys()
  const services = await testServices(t, queue.queue, { db: { ...db, url: proxy.via(db.url), sql }, apiKeys: api.API_KEYS })
  const config = testConfig(env)
  const { logger } = captureLogs(config)
  const app = (held.app = await buildApp({ config, services, logger }))
  await app.ready()
  return { app, proxy, sql, services, tokens: api.tokens, queue }
}

// ---- requests built from the served OpenAPI document (routes-examples, hardening) ----------

export interface Parameter {
  in: 'query' | 'path' | 'header' | 'cookie'
  name: string
  required?: boolean
  example?: unknown
  /** shown by Swagger UI as an example, not filled into "Try it out" */
  'x-example'?: unknown
  examples?: Record<string, { value: unknown }>
  schema?: { example?: unknown; examples?: unknown[]; default?: unknown; enum?: unknown[] }
}

export interface Operation {
  summary?: string
  security?: unknown[]
  /** the scopes the route's requireScope hook demands (added by the auth plugin) */
  'x-scopes'?: string[]
  /** the audit action of an audited route */
  'x-audit-action'?: string
  parameters?: Parameter[]
  requestBody?: { required?: boolean; content: Record<string, { example?: unknown; examples?: Record<string, { value: unknown }>; schema?: unknown }> }
  responses: Record<string, unknown>
}

export interface Document {
  paths: Record<string, Record<string, Operation>>
}

export function exampleOf(parameter: Parameter): unknown {
  if (parameter.example !== undefined) return parameter.example
  if (parameter['x-example'] !== undefined) return parameter['x-example']
  const named = parameter.examples === undefined ? undefined : Object.values(parameter.examples)[0]
  if (named !== undefined) return named.value
  if (parameter.schema?.example !== undefined) return parameter.schema.example
  if (parameter.schema?.examples?.[0] !== undefined) return parameter.schema.examples[0]
  return undefined
}

/** The value a request uses for a parameter: its example, else (when required) its default. */
export function valueOf(parameter: Parameter): string | undefined {
  const value = exampleOf(parameter) ?? (parameter.required === true ? parameter.schema?.default ?? parameter.schema?.enum?.[0] : undefined)
  return value === undefined ? undefined : String(value)
}

export interface Built {
  request: InjectOptions
  /** the parameters the request carries, by place and name */
  used: Parameter[]
}

export function buildRequest(path: string, method: string, operation: Operation, token: string, omit?: Parameter): Built {
  const used: Parameter[] = []
  let url = path
  const query = new URLSearchParams()
  const headers: Record<string, string> = needsKey(operation) ? bearer(token) : {}
  for (const parameter of operation.parameters ?? []) {
    if (parameter === omit) continue
    const value = valueOf(parameter)
    if (parameter.in === 'path') {
      assert.ok(value !== undefined, `${method.toUpperCase()} ${path}: path parameter ${parameter.name} has an example`)
      url = url.replace(`{${parameter.name}}`, encodeURIComponent(value))
      continue
    }
    if (value === undefined) continue
    used.push(parameter)
    if (parameter.in === 'query') query.set(parameter.name, value)
    if (parameter.in === 'header') headers[parameter.name] = value
  }
  const request: InjectOptions = { method: method.toUpperCase() as InjectOptions['method'], url: `${url}${query.size > 0 ? `?${query}` : ''}`, headers }
  const json = operation.requestBody?.content['application/json']
  if (json !== undefined) {
    const example = json.example ?? (json.examples === undefined ? undefined : Object.values(json.examples)[0]?.value)
    if (example !== undefined) request.payload = example as InjectOptions['payload']
  }
  return { request, used }
}

export const documented = (operation: Operation, status: number): boolean =>
  operation.responses[String(status)] !== undefined || operation.responses.default !== undefined

export async function documentOf(app: FastifyInstance): Promise<Document> {
  const response = await app.inject({ url: '/docs/json' })
  assert.equal(response.statusCode, 200)
  return response.json<Document>()
}

/** Whether the document says an operation needs a key (public ones carry `security: []`). */
export const needsKey = (operation: Operation): boolean => (operation.security?.length ?? 0) > 0
