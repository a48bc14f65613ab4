// Prints a new API key and the API_KEYS entry that grants it (see --help).
import { SCOPES, apiKeyEntry, generateApiKey, type Scope } from '../auth/api-keys.ts'
import { UsageError, parseCli, runCli } from './common.ts'

const USAGE = `
usage: npm run key -- [NAME] [SCOPE,SCOPE|all]

Prints a new random API key and its API_KEYS entry (name:scopes:sha256); only the hash goes
into the configuration. NAME defaults to dashboard, the scopes to logins:read.
Scopes: ${SCOPES.join(', ')}.
Exit codes: 0 done, 2 wrong command line.
`

await runCli('key', async () => {
  const { positionals } = parseCli({ name: 'key', usage: USAGE, allowPositionals: true, options: {} })
  if (positionals.length > 2) throw new UsageError('at most NAME and SCOPES (see npm run key -- --help)')
  const [name = 'dashboard', scopeList = 'logins:read'] = positionals
  const scopes = scopeList === 'all' ? [...SCOPES] : scopeList.split(',').map((s) => s.trim())
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name)) throw new UsageError('NAME must be 1-64 letters, digits, _ . or -')
  const unknown = scopes.find((s) => !(SCOPES as readonly string[]).includes(s))
  if (unknown !== undefined) throw new UsageError(`unknown scope ${unknown.slice(0, 40)} (scopes: ${SCOPES.join(', ')}, or all)`)
  const secret = generateApiKey()
  console.log(`key (give it to the caller, store it nowhere else): ${secret}`)
  console.log(`API_KEYS entry (only the hash is kept):            ${apiKeyEntry(name, scopes as Scope[], secret)}`)
})
