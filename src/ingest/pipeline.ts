import type { Sql, TransactionSql } from 'postgres'
import type { Masker } from '../pii/mask.ts'
import { pseudonymAddress, type IpPrefixer } from '../pii/ip-prefix.ts'
import { loginAad, periodOf, rejectionAad, seal, type DataKey, type KeyScope, type Vault } from '../pii/vault.ts'
import { encodeAppVersion } from './app-version.ts'
import { isDataError, refusalReason } from '../db/errors.ts'
import { compareKeys } from '../db/lock-order.ts'
import { MonthPartitions } from '../logins/partitions.ts'
import { lockMaskKeyStateShared } from '../pii/mask-keys.ts'
import { parseLoginMessage } from './message.ts'
import type { QueueMessage } from './queue.ts'

/** A row of `user_logins` as the pipeline writes it. */
export interface LoginRow {
  message_id: string
  user_id: string
  device_type: string
  masked_ip: string
  masked_device_id: string
  locale: string | null
  app_version: number | null
  app_version_text: string
  create_date: string
  sent_at: Date
  mask_key_id: string
  /** masks under the next key while a mask key rotation runs; null otherwise */
  next_masked_ip: string | null
  next_masked_device_id: string | null
  next_mask_key_id: string | null
  /** `<key id>:<ipcrypt-pfx pseudonym>`; null when IP_PREFIX_KEYS is off or the ip is not an address */
  masked_ip_prefix: string | null
}

/** A row before masking: masks are computed inside the storing transaction, under the key state it reads. */
type UnmaskedRow = Omit<LoginRow, 'masked_ip' | 'masked_device_id' | 'mask_key_id' | 'next_masked_ip' | 'next_masked_device_id' | 'next_mask_key_id' | 'masked_ip_prefix'>

interface SealedLogin {
  kind: 'login'
  message: QueueMessage
  row: UnmaskedRow
  /** the originals, in memory only, to be masked inside the transaction */
  pii: { ip: string; device_id: string }
  dataKey: DataKey
  ciphertext: Buffer
}

interface SealedRejection {
  kind: 'rejection'
  message: QueueMessage
  reason: string
  dataKey: DataKey
  ciphertext: Buffer
}

type Sealed = SealedLogin | SealedRejection

export interface StoreCounts {
  /** new rows in user_logins */
  inserted: number
  /** messages already stored by an earlier delivery (as a row or a rejection) */
  duplicates: number
  /** new rejection records */
  rejected: number
  /** new rejection records per reason (reasons name a field and a rule, never a value) */
  rejectedReasons: Record<string, number>
}

/** Adds the counts of `more` into `into`. */
export function addCounts(into: StoreCounts, more: StoreCounts): StoreCounts {
  into.inserted += more.inserted
  into.duplicates += more.duplicates
  into.rejected += more.rejected
  for (const [reason, n] of Object.entries(more.rejectedReasons)) into.rejectedReasons[reason] = (into.rejectedReasons[reason] ?? 0) + n
  return into
}

/** What one transaction (or its halves) stored, by message id. */
export interface StoreResult extends StoreCounts {
  /** message ids that got a new row in user_logins */
  insertedIds: Set<string>
  /** message ids that got a new rejection record, with its reason */
  rejectedIds: Map<string, string>
}

export interface BatchOutcome extends StoreCounts {
  /** messages whose row or rejection is committed, safe to delete from the queue */
  stored: QueueMessage[]
}

function mergeResults(first: StoreResult, second: StoreResult): StoreResult {
  addCounts(first, second)
  for (const id of second.insertedIds) first.insertedIds.add(id)
  for (const [id, reason] of second.rejectedIds) first.rejectedIds.set(id, reason)
  return first
}

/** Subject of the data key for a rejected body: its user when one can be read, so erasure covers it too. */
function rejectionSubject(body: string): string {
  try {
    const userId = (JSON.parse(body) as { user_id?: unknown } | null)?.user_id
    if (typeof userId === 'string' && userId.length <= 128 && userId.isWellFormed() && !userId.includes('\u0000')) return userId
  } catch {
    // not JSON: no user to attribute it to
  }
  return ''
}

/**
 * The batch pipeline: parse -> validate -> mask -> encrypt -> store in one transaction.
 * Deleting from the queue is the caller's job, and only for `stored` messages.
 */
export class LoginPipeline {
  private readonly partitions: MonthPartitions

  constructor(
    private readonly sql: Sql,
    private readonly masker: Masker,
    private readonly vault: Vault,
    private readonly ipPrefixer: IpPrefixer | null = null,
  ) {
    this.partitions = new MonthPartitions(sql)
  }

  async process(messages: readonly QueueMessage[]): Promise<BatchOutcome> {
    const { insertedIds: _inserted, rejectedIds: _rejected, ...counts } = await this.processById(messages)
    return { ...counts, stored: [...messages] }
  }

  /** As process(), and says which message ids got a row or a rejection (the rest were duplicates); all are stored. */
  async processById(messages: readonly QueueMessage[]): Promise<StoreResult> {
    if (messages.length === 0) return { inserted: 0, duplicates: 0, rejected: 0, rejectedReasons: {}, insertedIds: new Set(), rejectedIds: new Map() }
    return this.storeOrSplit(await this.seal(messages))
  }

  /** Parses, masks and encrypts a batch; needs the database only to fetch data keys. */
  async seal(messages: readonly QueueMessage[]): Promise<Sealed[]> {
    const parsed = messages.map((message) => ({ message, result: parseLoginMessage(message.body) }))
    const scopes: KeyScope[] = parsed.map(({ message, result }) => ({
      subject: result.ok ? result.login.user_id : rejectionSubject(message.body),
      period: periodOf(message.sentAt),
    }))
    const keys = await this.vault.dataKeys(scopes)
    return parsed.map(({ message, result }, i): Sealed => {
      const dataKey = this.vault.keyFor(keys, scopes[i] as KeyScope)
      if (!result.ok) {
        return {
          kind: 'rejection',
          message,
          reason: result.reason,
          dataKey,
          ciphertext: seal(dataKey.key, Buffer.from(message.body, 'utf8'), rejectionAad(message.messageId)),
        }
      }
      const { login } = result
      const originals = Buffer.from(JSON.stringify({ ip: login.ip, device_id: login.device_id }), 'utf8')
      return {
        kind: 'login',
        message,
        dataKey,
        ciphertext: seal(dataKey.key, originals, loginAad(message.messageId)),
        pii: { ip: login.ip, device_id: login.device_id },
        row: {
          message_id: message.messageId,
          user_id: login.user_id,
          device_type: login.device_type,
          locale: login.locale ?? null,
          app_version: encodeAppVersion(login.app_version),
          app_version_text: login.app_version,
          create_date: message.sentAt.toISOString().slice(0, 10),
          sent_at: message.sentAt,
        },
      }
    })
  }

  /**
   * Stores the batch in one transaction. When the database refuses the data of some message,
   * halves the batch until that message is alone, and records it as rejected; the rest is
   * stored. Availability errors are thrown unchanged: the caller leaves the batch on the queue.
   */
  async storeOrSplit(items: Sealed[]): Promise<StoreResult> {
    // The months' partitions, before the transaction (a no-op for months already seen).
    await this.partitions.ensure(items.flatMap((item) => (item.kind === 'login' ? [item.row.create_date] : [])))
    try {
      return await this.sql.begin((tx) => this.store(tx, items))
    } catch (error) {
      if (!isDataError(error)) throw error
      if (items.length === 1) {
        const [item] = items as [Sealed]
        if (item.kind === 'rejection') throw error
        return this.storeOrSplit([this.refused(item, refusalReason(error))])
      }
      const middle = Math.ceil(items.length / 2)
      const first = await this.storeOrSplit(items.slice(0, middle))
      const second = await this.storeOrSplit(items.slice(middle))
      return mergeResults(first, second)
    }
  }

  private refused(item: SealedLogin, reason: string): SealedRejection {
    const { message, dataKey } = item
    return {
      kind: 'rejection',
      message,
      reason,
      dataKey,
      ciphertext: seal(dataKey.key, Buffer.from(message.body, 'utf8'), rejectionAad(message.messageId)),
    }
  }

  private async store(tx: TransactionSql, items: readonly Sealed[]): Promise<StoreResult> {
    // Rows go in in one fixed order, by their unique key: a message redelivered to another
    // replica mid-batch arrives there in another order, and two transactions inserting the same
    // keys in different orders each wait for a row the other holds (a deadlock, and a retry).
    const logins = items.filter((i): i is SealedLogin => i.kind === 'login')
      .sort((a, b) => compareKeys(a.row.create_date, b.row.create_date) || compareKeys(a.message.messageId, b.message.messageId))
    const rejections = items.filter((i): i is SealedRejection => i.kind === 'rejection')
      .sort((a, b) => compareKeys(a.message.messageId, b.message.messageId))
    const insertedIds = new Set<string>()
    const rejectedIds = new Map<string, string>()
    const rejectedReasons: Record<string, number> = {}
    if (logins.length > 0) {
      const keys = await lockMaskKeyStateShared(tx)
      const rows = logins.map((l): LoginRow => ({
        ...l.row,
        masked_ip: this.masker.maskIp(l.pii.ip, keys.current),
        masked_device_id: this.masker.maskDeviceId(l.pii.device_id, keys.current),
        mask_key_id: keys.current,
        next_masked_ip: keys.next === null ? null : this.masker.maskIp(l.pii.ip, keys.next),
        next_masked_device_id: keys.next === null ? null : this.masker.maskDeviceId(l.pii.device_id, keys.next),
        next_mask_key_id: keys.next,
        masked_ip_prefix: this.ipPrefixer?.pseudonym(l.pii.ip) ?? null,
      }))
      // One statement for the rows and their sealed originals, with one array per column: the
      // same prepared statement whatever the number of rows, and one round trip. Only rows that
      // were inserted get a vault row (a redelivered message's row already has one).
      const column = <K extends keyof LoginRow>(name: K): LoginRow[K][] => rows.map((row) => row[name])
      // A message delivered twice can be twice in one coalesced batch: one vault entry per message id.
      const sealed = [...new Map(logins.map((l) => [l.message.messageId, l])).values()]
      // The vault insert runs although the outer query does not read it (data-modifying CTEs always do).
      const created = await tx<{ message_id: string }[]>`
        WITH created AS (
          INSERT INTO user_logins (message_id, user_id, device_type, masked_ip, masked_device_id, locale, app_version,
                                   app_version_text, create_date, sent_at, mask_key_id, next_masked_ip, next_masked_device_id,
                                   next_mask_key_id, masked_ip_prefix, ip_prefix_net)
          SELECT * FROM unnest(
            ${tx.array(column('message_id'))}::text[], ${tx.array(column('user_id'))}::text[],
            ${tx.array(column('device_type'))}::text[], ${tx.array(column('masked_ip'))}::text[],
            ${tx.array(column('masked_device_id'))}::text[], ${tx.array(column('locale'))}::text[],
            ${tx.array(column('app_version'))}::int[], ${tx.array(column('app_version_text'))}::text[],
            ${tx.array(column('create_date'))}::date[], ${tx.array(rows.map((row) => row.sent_at.toISOString()))}::timestamptz[],
            ${tx.array(column('mask_key_id'))}::text[], ${tx.array(column('next_masked_ip'))}::text[],
            ${tx.array(column('next_masked_device_id'))}::text[], ${tx.array(column('next_mask_key_id'))}::text[],
            ${tx.array(column('masked_ip_prefix'))}::text[], ${tx.array(rows.map((row) => pseudonymAddress(row.masked_ip_prefix)))}::inet[])
          ON CONFLICT (message_id, create_date) DO NOTHING
          RETURNING id, message_id),
        vault AS (
        INSERT INTO pii_vault (login_id, data_key_id, ciphertext)
        SELECT created.id, sealed.data_key_id, decode(sealed.ciphertext, 'hex')
        FROM created JOIN unnest(
          ${tx.array(sealed.map((l) => l.message.messageId))}::text[],
          ${tx.array(sealed.map((l) => l.dataKey.id))}::bigint[],
          ${tx.array(sealed.map((l) => l.ciphertext.toString('hex')))}::text[]) AS sealed (message_id, data_key_id, ciphertext)
          ON sealed.message_id = created.message_id)
        SELECT message_id FROM created`
      for (const { message_id } of created) insertedIds.add(message_id)
    }
    if (rejections.length > 0) {
      const rows = rejections.map((r) => ({
        message_id: r.message.messageId,
        reason: r.reason,
        data_key_id: r.dataKey.id,
        body_ciphertext: r.ciphertext,
        sent_at: r.message.sentAt,
        receive_count: r.message.receiveCount,
      }))
      const created: { message_id: string; reason: string }[] = await tx`
        INSERT INTO rejected_messages ${tx(rows, 'message_id', 'reason', 'data_key_id', 'body_ciphertext', 'sent_at', 'receive_count')}
        ON CONFLICT (message_id) DO NOTHING
        RETURNING message_id, reason`
      for (const { message_id, reason } of created) {
        rejectedIds.set(message_id, reason)
        rejectedReasons[reason] = (rejectedReasons[reason] ?? 0) + 1
      }
    }
    const inserted = insertedIds.size
    const rejected = rejectedIds.size
    return { inserted, rejected, rejectedReasons, duplicates: items.length - inserted - rejected, insertedIds, rejectedIds }
  }
}
