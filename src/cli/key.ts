// Prints a new API key and the API_KEYS entry that grants it: npm run key -- <name> [scope,scope]
import { SCOPES, apiKeyEntry, generateApiKey, type Scope } from '../auth/api-keys.ts'

const [name = 'dashboard', scopeList = 'logins:read'] = process.argv.slice(2)
const scopes = scopeList === 'all' ? [...SCOPES] : scopeList.split(',').map((s) => s.trim())
const unknown = scopes.find((s) => !(SCOPES as readonly string[]).includes(s))
if (unknown !== undefined || !/^[A-Za-z0-9_.-]{1,64}$/.test(name)) {
  console.error(`usage: npm run key -- <name> <scope,scope|all>   (scopes: ${SCOPES.join(', ')})`)
  process.exit(2)
}
const secret = generateApiKey()
console.log(`key (give it to the caller, store it nowhere else): ${secret}`)
console.log(`API_KEYS entry (only the hash is kept):            ${apiKeyEntry(name, scopes as Scope[], secret)}`)
