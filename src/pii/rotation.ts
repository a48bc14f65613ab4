import type { Sql, TransactionSql } from 'postgres'
import type { Masker } from './mask.ts'
import { lockMaskKeyStateExclusive, readMaskKeyState, writeMaskKeyState, MaskKeyError } from './mask-keys.ts'
import { loginAad, open, type Vault } from './vault.ts'

export interface RotationLog {
  info(fields: Record<string, unknown>, message: string): void
}

export interface MaskRotationReport {
  from: string
  to: string
  /** rows given masks under the new key from their originals */
  remasked: number
  /** rows whose originals are gone (erased, expired, or from before the service): they keep their old masks */
  withoutOriginals: number
  /** true when this run swapped the masks in and made the new key current */
  switched: boolean
}

const PROGRESS = 'mask-rotation-progress'

interface Progress {
  to: string
  cursor: string
  remasked: number
  withoutOriginals: number
}

interface BackfillRow {
  id: string
  message_id: string | null
  mask_key_id: string | null
  masked_ip: string | null
  masked_device_id: string | null
  data_key_id: string | null
  ciphertext: Buffer | null
}

/**
 * Rotates the mask key online, resumably and idempotently:
 * 1. start: record `next` (every ingesting transaction from then on writes both masks);
 * 2. backfill: in id order, re-mask existing rows from the vault into the `next_*` columns,
 *    saving the position after each batch (a killed run continues from there);
 * 3. switch: in one transaction, with ingestion held at the lock, move `next_*` into the
 *    masks and make the new key current.
 * Readers see the old masks until the switch and the new ones after it, never a mix, so
 * duplicates stay visible throughout. Rows without originals keep their old masks.
 */
export async function rotateMaskKey(
  deps: { sql: Sql; masker: Masker; vault: Vault; log: RotationLog },
  to: string,
  options: { batchSize?: number; stopAfterBatches?: number } = {},
): Promise<MaskRotationReport> {
  const { sql, log } = deps
  const batchSize = options.batchSize ?? 500
  if (!deps.masker.has(to)) throw new MaskKeyError(`MASK_KEYS: key ${to} is not configured; add it on every replica first`)

  const from = await sql.begin(async (tx) => {
    const state = await lockMaskKeyStateExclusive(tx)
    if (state.current === to && state.next === null) return null
    if (state.next !== null && state.next !== to) {
      throw new MaskKeyError(`a rotation to mask key ${state.next} is in progress; finish it (npm run rotate-keys -- --mask ${state.next}) first`)
    }
    if (state.next === null) {
      await writeMaskKeyState(tx, { current: state.current, next: to })
      const progress: Progress = { to, cursor: '0', remasked: 0, withoutOriginals: 0 }
      await tx`
        INSERT INTO service_state (name, value) VALUES (${PROGRESS}, ${tx.json(progress as never)})
        ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, updated_at = now()`
      log.info({ from: state.current, to }, 'mask key rotation started: new logins get both masks')
    }
    return state.current
  })
  if (from === null) return { from: to, to, remasked: 0, withoutOriginals: 0, switched: false }

  let batches = 0
  for (;;) {
    if (options.stopAfterBatches !== undefined && batches >= options.stopAfterBatches) {
      const progress = await readProgress(sql)
      return { from, to, remasked: progress.remasked, withoutOriginals: progress.withoutOriginals, switched: false }
    }
    const done = await backfillBatch(deps, to, batchSize)
    batches++
    if (done) break
  }

  const report = await sql.begin(async (tx) => {
    const state = await lockMaskKeyStateExclusive(tx)
    const progress = await readProgress(tx)
    if (state.next !== to) return { from, to, remasked: progress.remasked, withoutOriginals: progress.withoutOriginals, switched: false }
    const [left] = await tx<{ n: number }[]>`
      SELECT count(*)::int AS n FROM user_logins WHERE next_mask_key_id IS NULL AND mask_key_id IS NOT NULL`
    if ((left?.n ?? 0) > 0) throw new MaskKeyError(`${left?.n} rows were not backfilled; run the rotation again`)
    await tx`
      UPDATE user_logins SET masked_ip = next_masked_ip, masked_device_id = next_masked_device_id, mask_key_id = next_mask_key_id,
        next_masked_ip = NULL, next_masked_device_id = NULL, next_mask_key_id = NULL
      WHERE next_mask_key_id IS NOT NULL`
    await writeMaskKeyState(tx, { current: to, next: null })
    await tx`DELETE FROM service_state WHERE name = ${PROGRESS}`
    return { from, to, remasked: progress.remasked, withoutOriginals: progress.withoutOriginals, switched: true }
  })
  log.info({ ...report }, report.switched ? 'mask key rotation finished: the new key is current' : 'mask key rotation already finished')
  return report
}

async function readProgress(sql: Sql | TransactionSql): Promise<Progress> {
  const [row] = await sql<{ value: Progress }[]>`SELECT value FROM service_state WHERE name = ${PROGRESS}`
  return row?.value ?? { to: '', cursor: '0', remasked: 0, withoutOriginals: 0 }
}

/** Re-masks the next batch after the saved position; true when there was nothing left. */
async function backfillBatch(deps: { sql: Sql; masker: Masker; vault: Vault; log: RotationLog }, to: string, batchSize: number): Promise<boolean> {
  const { sql, masker, vault, log } = deps
  const progress = await readProgress(sql)
  const rows = await sql<BackfillRow[]>`
    SELECT l.id::text AS id, l.message_id, l.mask_key_id, l.masked_ip, l.masked_device_id,
           v.data_key_id::text AS data_key_id, v.ciphertext
    FROM user_logins l LEFT JOIN pii_vault v ON v.login_id = l.id
    WHERE l.id > ${progress.cursor} AND l.next_mask_key_id IS NULL AND l.mask_key_id IS NOT NULL
    ORDER BY l.id LIMIT ${batchSize}`
  if (rows.length === 0) return true
  const keys = await vault.unwrapDataKeys(rows.flatMap((r) => (r.data_key_id === null ? [] : [r.data_key_id])))
  let remasked = 0
  let withoutOriginals = 0
  const updates = rows.map((row) => {
    const key = row.data_key_id === null ? undefined : keys.get(row.data_key_id)
    if (key === undefined || row.ciphertext === null || row.message_id === null || row.ciphertext.length === 0) {
      withoutOriginals++
      // Nothing to re-mask from: the row keeps its masks and its key id through the switch.
      return { id: row.id, ip: row.masked_ip, device: row.masked_device_id, key: row.mask_key_id }
    }
    const pii = JSON.parse(open(key, row.ciphertext, loginAad(row.message_id)).toString('utf8')) as { ip: string; device_id: string }
    remasked++
    return { id: row.id, ip: masker.maskIp(pii.ip, to), device: masker.maskDeviceId(pii.device_id, to), key: to }
  })
  const cursor = rows.at(-1)?.id ?? progress.cursor
  await sql.begin(async (tx) => {
    await tx`
      UPDATE user_logins u SET next_masked_ip = v.ip, next_masked_device_id = v.device, next_mask_key_id = v.key
      FROM unnest(${tx.array(updates.map((u) => u.id))}::bigint[], ${tx.array(updates.map((u) => u.ip ?? ''))}::text[],
                  ${tx.array(updates.map((u) => u.device ?? ''))}::text[], ${tx.array(updates.map((u) => u.key ?? ''))}::text[])
        AS v(id, ip, device, key)
      WHERE u.id = v.id`
    const next: Progress = { to, cursor, remasked: progress.remasked + remasked, withoutOriginals: progress.withoutOriginals + withoutOriginals }
    await tx`UPDATE service_state SET value = ${tx.json(next as never)}, updated_at = now() WHERE name = ${PROGRESS}`
  })
  log.info({ to, cursor, batch: rows.length, remasked: progress.remasked + remasked, withoutOriginals: progress.withoutOriginals + withoutOriginals }, 'mask key rotation: batch re-masked')
  return false
}

/** Rows still masked under `keyId` that could be re-masked; a key with any cannot be retired. */
async function remaskableRows(sql: Sql, keyId: string): Promise<number> {
  const [row] = await sql<{ n: number }[]>`
    SELECT count(*)::int AS n FROM user_logins l JOIN pii_vault v ON v.login_id = l.id
    WHERE l.mask_key_id = ${keyId} AND v.data_key_id IS NOT NULL`
  return row?.n ?? 0
}

/**
 * Forgets a mask key's fingerprint so the service starts without it. Refused while the key is
 * current or next, or while rows that could be re-masked still use it. Rows without originals
 * may keep its masks: they stay valid pseudonyms, equal among themselves.
 */
export async function retireMaskKey(sql: Sql, keyId: string): Promise<void> {
  const state = await readMaskKeyState(sql)
  if (state.current === keyId || state.next === keyId) throw new MaskKeyError(`mask key ${keyId} is in use (${state.current === keyId ? 'current' : 'next'}); rotate away from it first`)
  const left = await remaskableRows(sql, keyId)
  if (left > 0) throw new MaskKeyError(`mask key ${keyId} still masks ${left} rows that have originals; rotate first`)
  await sql`DELETE FROM key_fingerprints WHERE kind = 'mask' AND key_id = ${keyId}`
}

/** Forgets a master key's fingerprint; refused while any data key is wrapped by it. */
export async function retireMasterKey(sql: Sql, keyId: string, activeKeyId: string): Promise<void> {
  if (keyId === activeKeyId) throw new MaskKeyError(`master key ${keyId} is the active one (first in VAULT_MASTER_KEYS)`)
  const [row] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM pii_data_keys WHERE master_key_id = ${keyId}`
  if ((row?.n ?? 0) > 0) throw new MaskKeyError(`master key ${keyId} still wraps ${row?.n} data keys; run npm run rotate-keys -- --vault first`)
  await sql`DELETE FROM key_fingerprints WHERE kind = 'master' AND key_id = ${keyId}`
}
