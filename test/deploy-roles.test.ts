import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { test } from 'node:test'
import postgres from 'postgres'
import { createSql } from '../src/db/sql.ts'
import { LoginPipeline } from '../src/ingest/pipeline.ts'
import { refreshDuplicates } from '../src/logins/summary.ts'
import { eraseUserPii } from '../src/pii/erasure.ts'
import { Masker } from '../src/pii/mask.ts'
import { Vault, keyringProvider } from '../src/pii/vault.ts'
import { prepareDatabase } from '../src/prepare.ts'
import { SERVER_URL as serverUrl, testDatabase, testKeys } from './helper.ts'
import { loginRecord } from './ingest-helpers.ts'
import { queueMessage } from './routes-helpers.ts'

/*
 * docs/deploy-aws.md's "Database roles" block, run as written (role names made unique to the
 * run): the service's role, which owns nothing, can store logins into a month that has no
 * partition yet, fold the duplicates summary and erase a user's rows.
 */
test('docs/deploy-aws.md: the service\'s role of the documented grants ingests, folds the summary and erases', { skip: serverUrl === undefined ? 'needs roles of a PostgreSQL server' : false }, async (t) => {
  const db = await testDatabase(t)
  const keys = testKeys()
  await prepareDatabase(db.sql, keys)
  const doc = await readFile(new URL('../docs/deploy-aws.md', import.meta.url), 'utf8')
  const block = /### Database roles[\s\S]*?```sql\n([\s\S]*?)```/.exec(doc)?.[1]
  assert.ok(block !== undefined, 'the roles block is in the document')
  const suffix = randomBytes(4).toString('hex')
  const app = `li_app_${suffix}`
  const analyst = `li_analyst_${suffix}`
  const database = new URL(db.url).pathname.slice(1)
  const script = block
    .replace(/\blogin_ingest_app\b/g, app)
    .replace(/\banalyst\b/g, analyst)
    .replace(/ON DATABASE login_ingest\b/g, `ON DATABASE ${database}`)
    .replace(/PASSWORD '\.\.\.'/, `PASSWORD '${randomBytes(12).toString('hex')}'`)
  await db.sql.unsafe(script)
  // After the database's own cleanup (hooks run in order): its grants are gone with it.
  t.after(async () => {
    const admin = postgres(serverUrl as string, { max: 1, onnotice: () => {} })
    await admin.unsafe(`DROP ROLE IF EXISTS ${app}`)
    await admin.unsafe(`DROP ROLE IF EXISTS ${analyst}`)
    await admin.end({ timeout: 1 })
  })

  const url = new URL(db.url)
  url.username = app
  const sql = createSql({ url: url.toString(), max: 2, statementTimeoutMs: 0 })
  t.after(() => sql.end({ timeout: 1 }))
  const [who] = await sql<{ user: string }[]>`SELECT current_user AS user`
  assert.equal(who?.user, app)

  const pipeline = new LoginPipeline(sql, new Masker(keys.mask), new Vault(sql, keyringProvider(keys.master)))
  const sentAt = new Date('2031-05-03T10:00:00Z')
  const messages = [
    loginRecord({ user_id: 'u-1', ip: '10.9.0.1', device_id: 'dev-1' }),
    loginRecord({ user_id: 'u-2', ip: '10.9.0.1', device_id: 'dev-2' }),
    loginRecord({ user_id: 'u-2', ip: '10.9.0.2', device_id: 'dev-3' }),
  ].map((body) => queueMessage(body, sentAt))
  const stored = await pipeline.process(messages)
  assert.equal(stored.inserted, 3)
  const [part] = await sql<{ part: string }[]>`SELECT DISTINCT tableoid::regclass::text AS part FROM user_logins`
  assert.equal(part?.part, 'user_logins_2031_05', 'the month was made for the role')
  const queuePages = async () => (await sql<{ pages: number }[]>`SELECT pg_relation_size('login_summary_pending')::int / 8192 AS pages`)[0]?.pages
  assert.ok(((await queuePages()) ?? 0) > 0, 'the pending changes fill a page')
  assert.equal(await refreshDuplicates(sql, { wait: true }), 3)
  assert.equal(await queuePages(), 0, 'the role may truncate the emptied queue')
  const summary = await sql<{ logins: number; users: number }[]>`SELECT logins::int, users FROM login_duplicates`
  assert.deepEqual([...summary], [{ logins: 2, users: 2 }])
  await eraseUserPii(sql, 'u-2', { deleteRows: true })
  await refreshDuplicates(sql, { wait: true })
  assert.equal((await sql`SELECT 1 FROM login_duplicates`).length, 0, 'the shared ip is down to one login')
  const [once] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM login_single_values WHERE user_id = 'u-1'`
  assert.equal(once?.n, 2, 'u-1\'s ip and device are single values')
  await assert.rejects(sql`UPDATE audit_log SET reason = reason`, /permission denied/)
})
