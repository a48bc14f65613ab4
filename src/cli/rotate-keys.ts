// Key rotation and retirement, online and resumable (run again after any interruption); see --help.
import pino from 'pino'
import { ConfigError } from '../config.ts'
import { verifyKeyFingerprints } from '../pii/key-registry.ts'
import { Masker } from '../pii/mask.ts'
import { retireMaskKey, retireMasterKey, rotateMaskKey } from '../pii/rotation.ts'
import { Vault, keyringProvider } from '../pii/vault.ts'
import { IpPrefixer } from '../pii/ip-prefix.ts'
import { retireIpPrefixKey, rotateIpPrefixKey } from '../pii/ip-prefix-rotation.ts'
import { UsageError, cliConfig, cliSecrets, integerOption, openDatabase, parseCli, runCli } from './common.ts'

const USAGE = `
usage: npm run rotate-keys -- --mask ID | --vault | --retire-mask ID | --retire-vault ID
                               | --ip-prefix ID | --retire-ip-prefix ID [--batch-size N]

  --mask ID           re-mask every row under mask key ID (in MASK_KEYS), then make it current
  --vault             re-wrap every data key under the active (first) VAULT_MASTER_KEYS key
  --retire-mask ID    forget mask key ID (refused while rows that could be re-masked use it)
  --retire-vault ID   forget master key ID (refused while it wraps any data key)
  --ip-prefix ID      move every ip prefix pseudonym to key ID (first in IP_PREFIX_KEYS), from the vault
  --retire-ip-prefix ID  forget ip prefix key ID (refused while any row uses it)
  --batch-size N      rows or keys per transaction (1-10000, default 500)
  -h, --help          this text

Reads MASK_KEYS, VAULT_MASTER_KEYS and IP_PREFIX_KEYS, which must match the service's (else DATA_DIR's
generated ones). The database: DATABASE_URL, else the embedded PGlite of DATA_DIR (refused
while the service holds DATA_DIR). Exit codes: 0 done, 1 failed, 2 wrong command line.
`

const log = pino({ base: { component: 'rotate-keys' } })
await runCli('rotate-keys', async () => {
  const { values } = parseCli({
    name: 'rotate-keys',
    usage: USAGE,
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
  const batchSize = integerOption('batch-size', values['batch-size'], { max: 10_000 }) ?? 500
  const wantsIpPrefix = values['ip-prefix'] !== undefined || values['retire-ip-prefix'] !== undefined
  if (values.mask === undefined && !values.vault && values['retire-mask'] === undefined && values['retire-vault'] === undefined && !wantsIpPrefix) {
    throw new UsageError('say what to do: --mask ID, --vault, --retire-mask ID, --retire-vault ID, --ip-prefix ID or --retire-ip-prefix ID (see npm run rotate-keys -- --help)')
  }
  const config = cliConfig()
  const { mask, master, ipPrefix } = await cliSecrets(config)
  if (wantsIpPrefix && ipPrefix === null) throw new ConfigError('IP_PREFIX_KEYS', 'is required by --ip-prefix and --retire-ip-prefix')
  const database = await openDatabase(config, 'npm run rotate-keys', { max: 2, statementTimeoutMs: 0 })
  const sql = database.sql
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
    await database.close()
  }
})
