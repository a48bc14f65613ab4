import type { Sql, TransactionSql } from 'postgres'
import type { Keyring } from './keys.ts'

/**
 * Which mask key writes `masked_ip` / `masked_device_id`, kept in the database so that every
 * replica masks alike whatever order its MASK_KEYS lists: the first listed key on a fresh
 * database, then whatever the last completed rotation chose. During a rotation `next` is the
 * key whose masks are written beside the current ones.
 */
export interface MaskKeyState {
  current: string
  next: string | null
}

const STATE = 'mask-keys'
/** Held shared by every ingesting transaction and exclusively by rotation steps that change the state. */
export const MASK_STATE_LOCK = 'login-ingest:mask-keys'

export class MaskKeyError extends Error {
  readonly code = 'MASK_KEY_UNAVAILABLE'
}

/** Records the first configured key as current on a fresh database; returns the state either way. */
export async function initMaskKeyState(sql: Sql, keys: Keyring): Promise<MaskKeyState> {
  await sql`
    INSERT INTO service_state (name, value) VALUES (${STATE}, ${sql.json({ current: keys.active.id, next: null })})
    ON CONFLICT (name) DO NOTHING`
  const state = await readMaskKeyState(sql)
  for (const id of [state.current, state.next]) {
    if (id !== null && !keys.all.has(id)) {
      throw new MaskKeyError(`MASK_KEYS: key ${id} is the database's ${id === state.current ? 'current' : 'next'} mask key but is not configured`)
    }
  }
  return state
}

export async function readMaskKeyState(sql: Sql | TransactionSql): Promise<MaskKeyState> {
  const [row] = await sql<{ value: MaskKeyState }[]>`SELECT value FROM service_state WHERE name = ${STATE}`
  if (row === undefined) throw new MaskKeyError('mask key state missing: run the migrations and start the service once')
  return row.value
}

/**
 * For a transaction that writes masks: waits out a state change in progress, then reads the
 * state. The two statements are sent together (pipelined: one round trip); the server runs
 * them in order, and the read takes its snapshot only once the lock is granted, so it sees the
 * state that the lock holder committed.
 */
export async function lockMaskKeyStateShared(tx: TransactionSql): Promise<MaskKeyState> {
  const [, state] = await Promise.all([tx`SELECT pg_advisory_xact_lock_shared(hashtext(${MASK_STATE_LOCK}))`, readMaskKeyState(tx)])
  return state
}

/** For a transaction that changes the state: no ingesting transaction runs meanwhile. */
export async function lockMaskKeyStateExclusive(tx: TransactionSql): Promise<MaskKeyState> {
  await tx`SELECT pg_advisory_xact_lock(hashtext(${MASK_STATE_LOCK}))`
  return readMaskKeyState(tx)
}

export async function writeMaskKeyState(tx: TransactionSql, state: MaskKeyState): Promise<void> {
  await tx`UPDATE service_state SET value = ${tx.json(state as never)}, updated_at = now() WHERE name = ${STATE}`
}
