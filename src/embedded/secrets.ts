import { randomBytes } from 'node:crypto'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateApiKey } from '../auth/api-keys.ts'

/** Development secrets generated on first start and kept in DATA_DIR (never used in production). */
export interface EmbeddedSecrets {
  MASK_KEYS: string
  VAULT_MASTER_KEYS: string
  /** absent from files written before the option existed */
  IP_PREFIX_KEYS?: string
  demoApiKey: string
}

export async function loadOrCreateEmbeddedSecrets(dataDir: string): Promise<{ secrets: EmbeddedSecrets; created: boolean; path: string }> {
  const path = join(dataDir, 'secrets.json')
  try {
    return { secrets: JSON.parse(await readFile(path, 'utf8')) as EmbeddedSecrets, created: false, path }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
  }
  const secrets: EmbeddedSecrets = {
    MASK_KEYS: `k1:${randomBytes(32).toString('base64')}`,
    VAULT_MASTER_KEYS: `m1:${randomBytes(32).toString('base64')}`,
    IP_PREFIX_KEYS: `p1:${randomBytes(32).toString('base64')}`,
    demoApiKey: generateApiKey(),
  }
  await mkdir(dataDir, { recursive: true })
  await writeFile(path, `${JSON.stringify(secrets, null, 2)}\n`, { mode: 0o600, flag: 'wx' })
  return { secrets, created: true, path }
}
