import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { Sql } from 'postgres'
import { Vault, keyringProvider } from '../src/pii/vault.ts'
import { prepareDatabase } from '../src/prepare.ts'
import { SERVER_URL, testDatabase, testKeys, waitForLockWait } from './helper.ts'

/*
 * Data keys are created by whichever session stores a (user, month) first. The keys a session
 * inserts come back with their ids (their plaintext is the one it drew); a key another session
 * inserted first must be read back and used, never replaced by one of our own.
 */

test('data keys: new ones are usable at once, and a key another session inserted first is the one used', { skip: SERVER_URL === undefined ? 'needs two sessions (PostgreSQL server; PGlite serves one)' : false }, async (t) => {
  const db = await testDatabase(t, { max: 4 })
  const keys = testKeys()
  await prepareDatabase(db.sql, keys)
  const provider = keyringProvider(keys.master)
  const raced = { subject: 'u-raced', period: '2026-03-01' }
  const fresh = { subject: 'u-fresh', period: '2026-03-01' }

  // Session B inserts the raced key and holds its transaction open.
  const b = await db.sql.reserve()
  t.after(() => b.release())
  await b`BEGIN`
  const fromB = new Vault(b as unknown as Sql, provider).dataKeys([raced])

  // Session A wants both keys: its insert of the raced one waits on B's uncommitted row.
  const vaultA = new Vault(db.sql, provider)
  await fromB
  const fromA = vaultA.dataKeys([raced, fresh])
  await waitForLockWait(db.sql, 'pii_data_keys', 'session A on the raced key')
  await b`COMMIT`
  const a = await fromA
  const bKeys = await fromB

  const aRaced = vaultA.keyFor(a, raced)
  const bRaced = vaultA.keyFor(bKeys, raced)
  assert.equal(aRaced.id, bRaced.id, 'one key for the scope')
  assert.deepEqual(aRaced.key, bRaced.key, 'the plaintext of the key B inserted')
  const aFresh = vaultA.keyFor(a, fresh)
  const stored = await vaultA.unwrapDataKeys([aFresh.id, aRaced.id])
  assert.deepEqual(stored.get(aFresh.id), aFresh.key, 'a key A inserted is the one stored, wrapped')
  assert.deepEqual(stored.get(aRaced.id), aRaced.key)
  const [count] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM pii_data_keys`
  assert.equal(count?.n, 2)
})

test('data keys: two sessions creating the same keys in opposite orders do not deadlock', { skip: SERVER_URL === undefined ? 'needs two sessions (PostgreSQL server; PGlite serves one)' : false }, async (t) => {
  const db = await testDatabase(t, { max: 4 })
  const keys = testKeys()
  await prepareDatabase(db.sql, keys)
  const provider = keyringProvider(keys.master)
  // Each statement holds the keys it inserted until it ends; in opposite orders, each would wait
  // for the other's next key. Batches from two replicas name users in any order.
  for (let round = 0; round < 5; round++) {
    const scopes = Array.from({ length: 400 }, (_, i) => ({ subject: `u-${round}-${i}`, period: '2026-03-01' }))
    const vault = new Vault(db.sql, provider)
    const [a, b] = await Promise.all([vault.dataKeys(scopes), vault.dataKeys([...scopes].reverse())])
    for (const scope of scopes) assert.equal(vault.keyFor(a, scope).id, vault.keyFor(b, scope).id, 'one key per scope, whoever created it')
  }
  const [count] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM pii_data_keys`
  assert.equal(count?.n, 2000)
})
