/**
 * Summarises a V8 CPU profile (node --cpu-prof): where the process spent its time, by function
 * (self time) and by package or source folder. `node --import tsx bench/profile.ts FILE [N]`.
 */
import { readFileSync } from 'node:fs'

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  hitCount: number
  children?: number[]
}

const [file, topArg] = process.argv.slice(2)
if (file === undefined) {
  console.error('usage: node --import tsx bench/profile.ts FILE.cpuprofile [N]')
  process.exit(2)
}
const top = Number(topArg ?? 25)
const profile = JSON.parse(readFileSync(file, 'utf8')) as { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] }
const total = profile.nodes.reduce((sum, node) => sum + node.hitCount, 0)
const idle = profile.nodes.filter((n) => ['(idle)', '(program)'].includes(n.callFrame.functionName)).reduce((s, n) => s + n.hitCount, 0)

const where = (url: string): string => {
  if (url === '') return '(native / V8)'
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)
  if (pkg) return pkg[1] as string
  if (url.startsWith('node:')) return 'node core'
  const own = /\/(src|routes|bench)\/(.*?)(?:\/[^/]+)?$/.exec(url)
  return own ? `${own[1]}/${own[2]}` : url
}
const byFunction = new Map<string, number>()

const byPlace = new Map<string, number>()
for (const node of profile.nodes) {
  if (node.hitCount === 0) continue
  const { functionName, url, lineNumber } = node.callFrame
  const key = `${functionName || '(anonymous)'}  ${url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*?\/(src|routes|bench)\//, '$1/')}:${lineNumber + 1}`
  byFunction.set(key, (byFunction.get(key) ?? 0) + node.hitCount)
  const place = where(url)
  byPlace.set(place, (byPlace.get(place) ?? 0) + node.hitCount)
}
// Inclusive time: a function's own samples and those of everything it called (counted once under recursion).
const byId = new Map(profile.nodes.map((node) => [node.id, node]))
const inclusive = new Map<string, number>()
const label = (node: ProfileNode): string =>
  `${node.callFrame.functionName || '(anonymous)'}  ${node.callFrame.url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*?\/(src|routes|bench)\//, '$1/')}:${node.callFrame.lineNumber + 1}`
const walk = (node: ProfileNode, onStack: Set<string>): number => {
  const key = label(node)
  const fresh = !onStack.has(key)
  if (fresh) onStack.add(key)
  let hits = node.hitCount
  for (const child of node.children ?? []) hits += walk(byId.get(child) as ProfileNode, onStack)
  if (fresh) {
    onStack.delete(key)
    inclusive.set(key, (inclusive.get(key) ?? 0) + hits)
  }
  return hits
}
const root = profile.nodes[0]
if (root !== undefined) walk(root, new Set())

const pct = (hits: number): string => `${((hits / total) * 100).toFixed(1).padStart(5)} %`
console.log(`${file}: ${total} samples, ${pct(idle).trim()} idle or program`)
console.log('\nby package or folder (self time):')
for (const [place, hits] of [...byPlace].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${pct(hits)}  ${place}`)
console.log('\nby function (self time):')
for (const [name, hits] of [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${pct(hits)}  ${name}`)
console.log('\nby function (inclusive, named functions of the project and its packages):')
for (const [name, hits] of [...inclusive].filter(([k]) => !k.startsWith('(') && !/ :0$/.test(k)).sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${pct(hits)}  ${name}`)
