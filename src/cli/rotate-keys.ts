// Key rotation and retirement, online and resumable (run again after any interruption):
//   npm run rotate-keys -- --mask k2          re-mask every row under mask key k2, then make it current
//   npm run rotate-keys -- --vault            re-wrap every data key under the active (first) VAULT_MASTER_KEYS key
//   npm run rotate-keys -- --retire-mask k1   forget k1 (refused while rows that could be re-masked use it)
//   npm run rotate-keys -- --retire-vault m1  forget m1 (refused while it wraps any data key)
//   npm run rotate-keys -- --ip-prefix p2     move every ip prefix pseudonym to p2 (first in IP_PREFIX_KEYS), from the vault
//   npm run rotate-keys -- --retire-ip-prefix p1  forget p1 (refused while any row uses it)
// Reads DATABASE_URL, MASK_KEYS, VAULT_MASTER_KEYS and IP_PREFIX_KEYS, which must match the service's.
import { parseArgs } from 'node:util'
import pino from 'pino'
import { ConfigError, loadConfig } from '../config.ts'
import { createSql } from '../db/sql.ts'
import { verifyKeyFingerprints } from '../pii/key-registry.ts'
import { Masker } from '../pii/mask.ts'
import { retireMaskKey, retireMasterKey, rotateMaskKey } from '../pii/rotation.ts'
import { Vault, keyringProvider } from '../pii/vault.ts'
import { parseKeyring } from '../pii/keys.ts'
import { IpPrefixer, parseIpPrefixKeys } from '../pii/ip-prefix.ts'
import { retireIpPrefixKey, rotateIpPrefixKey } from '../pii/ip-prefix-rotation.ts'

const log = pino({ base: { component: 'rotate-keys' } })
try {
  const { values } = parseArgs({
    options: {
      mask: { type: 'string' },
      vault: { type: 'boolean', default: false },
      'retire-mask': { type: 'string' },
      'retire-vault': { type: 'string' },
      'ip-prefix': { type: 'string' },
      'retire-ip-prefix': { type: 'string' },
      'batch-size': { type: 'string', default: '500' },
    },
  })
  const batchSize = Number(values['batch-size'])
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 10_000) throw new ConfigError('--batch-size', 'must be an integer from 1 to 10000')
  const config = loadConfig()
  for (const name of ['DATABASE_URL', 'MASK_KEYS', 'VAULT_MASTER_KEYS'] as const) {
    if (config[name] === undefined) throw new ConfigError(name, 'is required by npm run rotate-keys')
  }
  const mask = parseKeyring('MASK_KEYS', config.MASK_KEYS ?? '')
  const master = parseKeyring('VAULT_MASTER_KEYS', config.VAULT_MASTER_KEYS ?? '')
  const wantsIpPrefix = values['ip-prefix'] !== undefined || values['retire-ip-prefix'] !== undefined
  if (wantsIpPrefix && config.IP_PREFIX_KEYS === undefined) throw new ConfigError('IP_PREFIX_KEYS', 'is required by --ip-prefix and --retire-ip-prefix')
  const ipPrefix = config.IP_PREFIX_KEYS === undefined ? null : parseIpPrefixKeys(config.IP_PREFIX_KEYS)
  const sql = createSql({ url: config.DATABASE_URL ?? '', max: 2, statementTimeoutMs: 0 })
  try {
    await verifyKeyFingerprints(sql, { mask, master, ipPrefix })
    const vault = new Vault(sql, keyringProvider(master))
    if (values.mask !== undefined) {
      const report = await rotateMaskKey({ sql, masker: new Masker(mask), vault, log }, values.mask, { batchSize })
      console.log(JSON.stringify(report))
    }
    if (values.vault) {
      let total = 0
      for (let n = await vault.rewrapDataKeys(batchSize); n > 0; n = await vault.rewrapDataKeys(batchSize)) {
        total += n
        log.info({ rewrapped: total, to: master.active.id }, 'vault rotation: data keys re-wrapped')
      }
      console.log(JSON.stringify({ rewrapped: total, masterKey: master.active.id }))
    }
    if (values['ip-prefix'] !== undefined && ipPrefix !== null) {
      const prefixer = await IpPrefixer.create(ipPrefix)
      console.log(JSON.stringify(await rotateIpPrefixKey({ sql, prefixer, vault, log }, values['ip-prefix'], { batchSize })))
    }
    if (values['retire-ip-prefix'] !== undefined) {
      await retireIpPrefixKey(sql, values['retire-ip-prefix'], ipPrefix?.active.id ?? null)
      console.log(JSON.stringify({ retired: values['retire-ip-prefix'], kind: 'ip_prefix' }))
    }
    if (values['retire-mask'] !== undefined) {
      await retireMaskKey(sql, values['retire-mask'])
      console.log(JSON.stringify({ retired: values['retire-mask'], kind: 'mask' }))
    }
    if (values['retire-vault'] !== undefined) {
      await retireMasterKey(sql, values['retire-vault'], master.active.id)
      console.log(JSON.stringify({ retired: values['retire-vault'], kind: 'master' }))
    }
  } finally {
    await sql.end({ timeout: 5 })
  }
} catch (error) {
  console.error(`login-ingest rotate-keys: ${error instanceof ConfigError ? error.message : (error as Error).message}`)
  process.exit(1)
}
