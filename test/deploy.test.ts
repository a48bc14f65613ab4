// The deployment files agree with the app: docker-compose.yml, the LocalStack init hook (run for
// real against the SQS emulator), the Kubernetes manifests, the Dockerfile and what
// `npm run build` emits; and the compiled service runs with the compose configuration.
import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import { once } from 'node:events'
import { constants } from 'node:fs'
import { access, mkdir, mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises'
import { isBuiltin } from 'node:module'
import { createServer } from 'node:net'
import { dirname, join, posix, resolve } from 'node:path'
import { after, describe, test, type TestContext } from 'node:test'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { GetQueueAttributesCommand, GetQueueUrlCommand, ListQueuesCommand, ReceiveMessageCommand, SQSClient } from '@aws-sdk/client-sqs'
import ts from 'typescript'
import { parse, parseAllDocuments } from 'yaml'
import { SCOPES, hashApiKey, parseApiKeys } from '../src/auth/api-keys.ts'
import { EnvSchema, loadConfig } from '../src/config.ts'
import { loadMigrations } from '../src/db/migrate.ts'
import { startLoopbackEmulator } from '../src/embedded/queue.ts'
import { openApiDocument } from '../src/openapi.ts'
import { testDatabase, waitFor } from './helper.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const at = (...parts: string[]): string => join(ROOT, ...parts)
const run = promisify(execFile)

/** What the service reads (its config schema) plus what the AWS SDK reads from the environment. */
const SCHEMA_VARIABLES = Object.keys(EnvSchema.properties)
const AWS_SDK_VARIABLES = ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_REGION', 'AWS_ENDPOINT_URL']
const READ_BY_SOMEONE = new Set([...SCHEMA_VARIABLES, ...AWS_SDK_VARIABLES])

const INIT_SCRIPT = at('deploy/localstack/init-queue.sh')
const SAMPLES = at('fixtures/fetch-sample-logins.json')
const CREDENTIALS = { accessKeyId: 'test', secretAccessKey: 'test' }

type Json = Record<string, unknown>
const obj = (value: unknown, what: string): Json => {
  assert.ok(value !== null && typeof value === 'object' && !Array.isArray(value), `${what} must be a mapping`)
  return value as Json
}
const list = (value: unknown, what: string): unknown[] => {
  assert.ok(Array.isArray(value), `${what} must be a list`)
  return value
}
const str = (value: unknown, what: string): string => {
  assert.equal(typeof value, 'string', `${what} must be a string`)
  return value as string
}

// ---------------------------------------------------------------------------------------------
// docker-compose.yml

async function compose(): Promise<{ services: Record<string, Json> }> {
  const document = obj(parse(await readFile(at('docker-compose.yml'), 'utf8')), 'docker-compose.yml')
  return { services: obj(document.services, 'services') as Record<string, Json> }
}

/** A compose `environment:` as a map, in either of its two forms. */
function environmentOf(service: Json): Record<string, string> {
  const env = service.environment
  if (Array.isArray(env)) {
    return Object.fromEntries(env.map((entry) => {
      const text = str(entry, 'environment entry')
      const eq = text.indexOf('=')
      return eq < 0 ? [text, ''] : [text.slice(0, eq), text.slice(eq + 1)]
    }))
  }
  return Object.fromEntries(Object.entries(obj(env, 'environment')).map(([name, value]) => [name, String(value)]))
}

async function loginIngestEnv(): Promise<Record<string, string>> {
  const { services } = await compose()
  return environmentOf(obj(services['login-ingest'], 'services.login-ingest'))
}

/** The default of `name="${VAR:-default}"` in the init script: where it reads its inputs. */
async function scriptDefault(variable: string): Promise<string> {
  const match = new RegExp(`\\$\\{${variable}:-([^}]+)\\}`).exec(await readFile(INIT_SCRIPT, 'utf8'))
  assert.ok(match?.[1], `init-queue.sh has no default for ${variable}`)
  return match[1]
}

/** The bearer key README.md gives for the docker compose stack. */
async function readmeDemoKey(): Promise<string> {
  const key = /Authorization: Bearer (lik_[A-Za-z0-9_-]{20,})/.exec(await readFile(at('README.md'), 'utf8'))?.[1]
  assert.ok(key, 'README.md must name the demo key of docker compose')
  return key
}

describe('docker-compose.yml', () => {
  test('login-ingest sets only variables the service or the AWS SDK reads, and production accepts them as they are', async () => {
    const env = await loginIngestEnv()
    const unread = Object.keys(env).filter((name) => !READ_BY_SOMEONE.has(name))
    assert.deepEqual(unread, [], `variables neither src/config.ts nor the AWS SDK reads: ${unread.join(', ')}`)
    const config = loadConfig(env)
    assert.equal(config.NODE_ENV, 'production')
    assert.equal(config.HOST, '0.0.0.0', 'inside a container the service must listen on every interface')
    for (const name of SCHEMA_VARIABLES.filter((n) => env[n] !== undefined)) {
      assert.equal(String((config as Record<string, unknown>)[name]), env[name], `${name} must reach the service as written`)
    }
  })

  test('inside the compose network the service reaches LocalStack and PostgreSQL by service name', async () => {
    const { services } = await compose()
    const env = await loginIngestEnv()
    const queue = new URL(str(env.SQS_QUEUE_URL, 'SQS_QUEUE_URL'))
    assert.equal(queue.hostname, 'localstack')
    assert.equal(queue.port, '4566')
    assert.equal(queue.pathname, `/000000000000/${await scriptDefault('LOGIN_QUEUE_NAME')}`, 'the queue the init hook creates')
    if (env.SQS_DLQ_URL !== undefined) assert.equal(new URL(env.SQS_DLQ_URL).pathname, `${queue.pathname}-dlq`)
    assert.equal(new URL(str(env.AWS_ENDPOINT_URL, 'AWS_ENDPOINT_URL')).host, 'localstack:4566')
    const database = new URL(str(env.DATABASE_URL, 'DATABASE_URL'))
    assert.equal(database.hostname, 'postgres')
    const pg = environmentOf(obj(services.postgres, 'services.postgres'))
    assert.equal(decodeURIComponent(database.username), pg.POSTGRES_USER)
    assert.equal(decodeURIComponent(database.password), pg.POSTGRES_PASSWORD)
    assert.equal(database.pathname, `/${pg.POSTGRES_DB}`)
    assert.match(str(obj(services.postgres, 'postgres').image, 'postgres image'), /^postgres:17(\b|$)/)
  })

  test('the published port is PORT, and the service starts once both dependencies are healthy', async () => {
    const { services } = await compose()
    const service = obj(services['login-ingest'], 'login-ingest')
    const config = loadConfig(await loginIngestEnv())
    const ports = list(service.ports, 'login-ingest.ports').map((p) => String(p))
    assert.deepEqual(ports.map((p) => Number(p.split(':').at(-1))), [config.PORT], `ports ${ports.join(', ')} must publish PORT ${config.PORT}`)
    // Published on the host's loopback only: the demo keys are public, the LocalStack port likewise.
    for (const [name, definition] of Object.entries(services)) {
      for (const port of list(obj(definition, name).ports ?? [], `${name}.ports`).map((p) => String(p))) {
        assert.match(port, /^127\.0\.0\.1:\d+:\d+$/, `${name} publishes ${port} beyond the host's loopback`)
      }
    }
    assert.equal(service.build, '.')
    const dependsOn = obj(service.depends_on, 'login-ingest.depends_on')
    for (const dependency of ['localstack', 'postgres']) {
      assert.equal(obj(dependsOn[dependency], `depends_on.${dependency}`).condition, 'service_healthy')
      assert.ok(obj(obj(services[dependency], dependency).healthcheck, `${dependency}.healthcheck`).test, `${dependency} needs a healthcheck`)
    }
  })

  test('LocalStack (SQS only, a release that needs no token) runs the init hook with the samples mounted where it reads them', async () => {
    const { services } = await compose()
    const localstack = obj(services.localstack, 'localstack')
    assert.match(str(localstack.image, 'localstack image'), /^localstack\/localstack:\d+\.\d+/, 'pin a release: newer tags need an auth token')
    assert.equal(environmentOf(localstack).SERVICES, 'sqs')
    const mounts = list(localstack.volumes, 'localstack.volumes').map((v) => str(v, 'volume').split(':'))
    const hook = mounts.find(([source]) => source === './deploy/localstack/init-queue.sh')
    assert.ok(hook, 'deploy/localstack/init-queue.sh must be mounted')
    assert.match(hook[1] ?? '', /^\/etc\/localstack\/init\/ready\.d\/[\w.-]+\.sh$/)
    const samples = mounts.find(([source]) => source === './fixtures/fetch-sample-logins.json')
    assert.ok(samples, 'the fixtures file must be mounted')
    assert.equal(samples[1], await scriptDefault('SAMPLES_FILE'))
    assert.equal(samples[2], 'ro')
    // LocalStack runs only executable scripts with a shebang.
    await access(INIT_SCRIPT, constants.X_OK)
    assert.match(await readFile(INIT_SCRIPT, 'utf8'), /^#!\/usr\/bin\/env bash\n/)
    const healthcheck = JSON.stringify(obj(localstack.healthcheck, 'localstack.healthcheck').test)
    assert.match(healthcheck, /_localstack\/init\/ready/, 'healthy only once the hook has run')
    assert.match(healthcheck, /init-queue\.sh/)
  })

  test('the demo bearer key README.md names opens every scope of the compose API_KEYS', async () => {
    const key = await readmeDemoKey()
    const keys = parseApiKeys((await loginIngestEnv()).API_KEYS ?? '')
    const match = keys.find((k) => k.hash.equals(hashApiKey(key)))
    assert.ok(match, 'the README key must be in API_KEYS')
    assert.deepEqual([...match.scopes].sort(), [...SCOPES].sort())
  })
})

// ---------------------------------------------------------------------------------------------
// The LocalStack init hook, run for real with an SDK-based awslocal against the SQS emulator

async function startEmulator(t: TestContext): Promise<{ endpoint: string; client: SQSClient; queueUrl(name: string): Promise<string> }> {
  const server = await startLoopbackEmulator()
  const client = new SQSClient({ endpoint: server.endpoint, region: 'us-east-1', credentials: CREDENTIALS })
  t.after(async () => {
    client.destroy()
    await server.close()
  })
  return {
    endpoint: server.endpoint,
    client,
    async queueUrl(name) {
      const { QueueUrl } = await client.send(new GetQueueUrlCommand({ QueueName: name }))
      return str(QueueUrl, `URL of ${name}`)
    },
  }
}

async function runInitScript(endpoint: string, env: Record<string, string> = {}): Promise<{ code: number; output: string }> {
  const child = spawn('bash', [INIT_SCRIPT], {
    env: {
      ...process.env,
      PATH: `${at('test/fixtures')}:${process.env.PATH ?? ''}`,
      AWS_ENDPOINT_URL: endpoint,
      AWS_ACCESS_KEY_ID: CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: CREDENTIALS.secretAccessKey,
      AWS_REGION: 'us-east-1',
      SAMPLES_FILE: SAMPLES,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()))
  const [code] = (await once(child, 'exit')) as [number | null]
  return { code: code ?? -1, output }
}

async function attributes(client: SQSClient, queueUrl: string): Promise<Record<string, string>> {
  const { Attributes } = await client.send(new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['All'] }))
  return Attributes ?? {}
}

describe('deploy/localstack/init-queue.sh', () => {
  test('creates login-queue with a redrive policy to its DLQ and loads the 100 samples, once', async (t) => {
    const sqs = await startEmulator(t)
    const first = await runInitScript(sqs.endpoint)
    assert.equal(first.code, 0, first.output)

    const queueUrl = await sqs.queueUrl('login-queue')
    const dlqUrl = await sqs.queueUrl('login-queue-dlq')
    const queue = await attributes(sqs.client, queueUrl)
    const dlq = await attributes(sqs.client, dlqUrl)
    const redrive = JSON.parse(queue.RedrivePolicy ?? 'null') as { deadLetterTargetArn?: string; maxReceiveCount?: number | string } | null
    assert.equal(redrive?.deadLetterTargetArn, dlq.QueueArn)
    assert.equal(Number(redrive?.maxReceiveCount), 5)
    // At least what the service asks for on each receive, so a receive that asks for none is as safe.
    assert.ok(Number(queue.VisibilityTimeout) >= loadConfig({}).SQS_VISIBILITY_TIMEOUT_SECONDS, `VisibilityTimeout ${queue.VisibilityTimeout}`)
    assert.equal(queue.ApproximateNumberOfMessages, '100')
    assert.equal(dlq.ApproximateNumberOfMessages, '0')

    const again = await runInitScript(sqs.endpoint)
    assert.equal(again.code, 0, again.output)
    assert.match(again.output, /not sending them again/)
    assert.equal((await attributes(sqs.client, queueUrl)).ApproximateNumberOfMessages, '100', 'a second run must not send the samples twice')

    const bodies: unknown[] = []
    for (let empty = 0; empty < 3 && bodies.length < 101;) {
      const { Messages = [] } = await sqs.client.send(
        new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, VisibilityTimeout: 600, WaitTimeSeconds: 0 }),
      )
      empty = Messages.length === 0 ? empty + 1 : 0
      bodies.push(...Messages.map((m) => JSON.parse(m.Body ?? '') as unknown))
    }
    const records = JSON.parse(await readFile(SAMPLES, 'utf8')) as unknown[]
    const canonical = (values: unknown[]): string[] => values.map((v) => JSON.stringify(v)).sort()
    assert.equal(bodies.length, 100)
    assert.deepEqual(canonical(bodies), canonical(records), 'one message per record, its JSON as the body')
  })

  test('changes nothing and fails when the samples file cannot be read', async (t) => {
    const sqs = await startEmulator(t)
    const result = await runInitScript(sqs.endpoint, { SAMPLES_FILE: at('fixtures/no-such-file.json') })
    assert.notEqual(result.code, 0, result.output)
    const { QueueUrls = [] } = await sqs.client.send(new ListQueuesCommand({}))
    assert.deepEqual(QueueUrls, [])
  })
})

// ---------------------------------------------------------------------------------------------
// deploy/kubernetes

interface Manifest {
  file: string
  kind: string
  name: string
  body: Json
}

async function manifests(): Promise<Manifest[]> {
  const dir = at('deploy/kubernetes')
  const found: Manifest[] = []
  for (const file of (await readdir(dir)).filter((f) => f.endsWith('.yaml')).sort()) {
    for (const document of parseAllDocuments(await readFile(join(dir, file), 'utf8'))) {
      assert.deepEqual(document.errors, [], `${file} must parse`)
      const body = obj(document.toJS(), file)
      found.push({ file, kind: str(body.kind, `${file} kind`), name: str(obj(body.metadata ?? {}, 'metadata').name ?? '', 'name'), body })
    }
  }
  return found
}

const one = (all: Manifest[], kind: string): Manifest => {
  const matching = all.filter((m) => m.kind === kind)
  assert.equal(matching.length, 1, `exactly one ${kind}`)
  return matching[0] as Manifest
}

const dig = (value: unknown, path: string): unknown =>
  path.split('.').reduce<unknown>((at, key) => (at !== null && typeof at === 'object' ? (at as Json)[key] : undefined), value)

const podSpec = (m: Manifest): Json => obj(dig(m.body, m.kind === 'CronJob' ? 'spec.jobTemplate.spec.template.spec' : 'spec.template.spec'), `${m.file} pod spec`)
const containers = (m: Manifest): Json[] => list(podSpec(m).containers, `${m.file} containers`).map((c) => obj(c, 'container'))

type EnvEntry = { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }
const envOf = (container: Json): EnvEntry[] => list(container.env ?? [], 'env') as EnvEntry[]

describe('deploy/kubernetes', () => {
  test('kustomization.yaml lists every manifest except the example Secret', async () => {
    const kustomization = obj(parse(await readFile(at('deploy/kubernetes/kustomization.yaml'), 'utf8')), 'kustomization.yaml')
    const files = (await readdir(at('deploy/kubernetes'))).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
    const listed = list(kustomization.resources, 'resources').map(String)
    // Applying the base must never overwrite the real Secret with placeholders.
    assert.deepEqual([...listed].sort(), files.filter((f) => f !== 'secret.example.yaml').sort())
  })

  test('probes call routes the app serves, on the port the service listens on', async () => {
    const all = await manifests()
    const deployment = one(all, 'Deployment')
    const [container] = containers(deployment)
    assert.ok(container)
    const paths = obj(obj(await openApiDocument(), 'OpenAPI document').paths, 'paths')
    const env = Object.fromEntries(envOf(container).filter((e) => e.value !== undefined).map((e) => [e.name, e.value as string]))
    const port = loadConfig({ ...env, NODE_ENV: 'test' }).PORT
    const ports = list(container.ports, 'ports').map((p) => obj(p, 'port'))
    assert.deepEqual(ports.map((p) => p.containerPort), [port], 'the container port is PORT')
    const portNames = new Map(ports.map((p) => [p.name, p.containerPort]))
    const expected = { livenessProbe: '/healthz', readinessProbe: '/readyz', startupProbe: undefined }
    for (const [probe, path] of Object.entries(expected)) {
      const get = obj(dig(container, `${probe}.httpGet`), `${probe}.httpGet`)
      if (path !== undefined) assert.equal(get.path, path, probe)
      assert.ok(obj(paths[str(get.path, `${probe} path`)] ?? {}, 'path').get, `${probe} path ${String(get.path)} must be a GET route of the app`)
      assert.equal(typeof get.port === 'string' ? portNames.get(get.port) : get.port, port, `${probe} port`)
    }
    const service = one(all, 'Service')
    const servicePort = obj(list(dig(service.body, 'spec.ports'), 'service ports')[0], 'service port')
    assert.equal(typeof servicePort.targetPort === 'string' ? portNames.get(servicePort.targetPort) : servicePort.targetPort, port)
    const monitor = one(all, 'ServiceMonitor')
    const endpoint = obj(list(dig(monitor.body, 'spec.endpoints'), 'endpoints')[0], 'endpoint')
    assert.equal(endpoint.port, servicePort.name)
    assert.ok(obj(paths[str(endpoint.path, 'metrics path')] ?? {}, 'path').get, 'the scrape path must be a route')
  })

  test('the Deployment gives production every variable it needs, secrets from the Secret, and nothing unread', async () => {
    const all = await manifests()
    const [container] = containers(one(all, 'Deployment'))
    assert.ok(container)
    const example = one(all, 'Secret')
    assert.equal(example.file, 'secret.example.yaml')
    const placeholders = obj(example.body.stringData, 'stringData')
    const env: Record<string, string> = {}
    for (const entry of envOf(container)) {
      assert.ok(READ_BY_SOMEONE.has(entry.name), `${entry.name} is read by neither the service nor the AWS SDK`)
      const ref = entry.valueFrom?.secretKeyRef
      if (ref !== undefined) {
        assert.equal(ref.name, example.name, `${entry.name} must come from the ${example.name} Secret`)
        env[entry.name] = str(placeholders[ref.key], `secret.example.yaml key ${ref.key}`)
      } else {
        env[entry.name] = str(entry.value, `${entry.name} value`)
      }
    }
    for (const secret of ['DATABASE_URL', 'MASK_KEYS', 'VAULT_MASTER_KEYS', 'API_KEYS']) {
      assert.ok(envOf(container).find((e) => e.name === secret)?.valueFrom?.secretKeyRef, `${secret} must come from the Secret`)
    }
    const config = loadConfig(env) // throws, naming the variable, if production lacks one
    assert.equal(config.NODE_ENV, 'production')
    assert.equal(config.HOST, '0.0.0.0')
    assert.match(config.DATABASE_URL ?? '', /sslmode=verify-full/, 'the example database URL checks the server certificate')
    for (const value of Object.values(placeholders)) assert.match(String(value), /REPLACE_ME/, 'the example Secret holds placeholders only')
  })

  test('the grace period outlasts the preStop pause plus the service\'s own shutdown grace', async () => {
    const deployment = one(await manifests(), 'Deployment')
    const [container] = containers(deployment)
    assert.ok(container)
    const env = Object.fromEntries(envOf(container).filter((e) => e.value !== undefined).map((e) => [e.name, e.value as string]))
    const graceMs = loadConfig({ ...env, NODE_ENV: 'test' }).SHUTDOWN_GRACE_MS
    const preStop = obj(dig(container, 'lifecycle.preStop'), 'preStop')
    const command = list(dig(preStop, 'exec.command'), 'preStop command').map(String)
    assert.equal(command[0], 'sleep', 'preStop pauses so the endpoints drain before SIGTERM')
    const pause = Number(command[1])
    assert.ok(pause > 0)
    const period = Number(podSpec(deployment).terminationGracePeriodSeconds)
    assert.ok(period > graceMs / 1000 + pause, `terminationGracePeriodSeconds ${period} must exceed ${graceMs / 1000} + ${pause}`)
  })

  test('every pod runs as non-root on a read-only root filesystem, with requests and limits', async () => {
    const all = await manifests()
    for (const workload of [one(all, 'Deployment'), one(all, 'CronJob')]) {
      assert.equal(dig(podSpec(workload), 'securityContext.runAsNonRoot'), true, `${workload.file} pod`)
      assert.equal(typeof dig(podSpec(workload), 'securityContext.runAsUser'), 'number', `${workload.file}: numeric user, so runAsNonRoot can be checked`)
      for (const container of containers(workload)) {
        const where = `${workload.file} ${String(container.name)}`
        assert.equal(dig(container, 'securityContext.readOnlyRootFilesystem'), true, where)
        assert.equal(dig(container, 'securityContext.allowPrivilegeEscalation'), false, where)
        for (const kind of ['requests', 'limits']) {
          for (const resource of ['cpu', 'memory']) assert.ok(dig(container, `resources.${kind}.${resource}`), `${where} resources.${kind}.${resource}`)
        }
      }
    }
  })

  test('the CronJob POSTs /ingest with a bearer key from the Secret, never two runs at a time', async () => {
    const all = await manifests()
    const cron = one(all, 'CronJob')
    assert.equal(dig(cron.body, 'spec.concurrencyPolicy'), 'Forbid')
    const [container] = containers(cron)
    assert.ok(container)
    const script = list(container.command, 'command').map(String).join(' ')
    const service = one(all, 'Service')
    assert.match(script, /-X POST/)
    assert.match(script, new RegExp(`http://${service.name}(:${String(dig(service.body, 'spec.ports.0.port'))})?/ingest`))
    const bearer = /Authorization: Bearer \$\{?(\w+)\}?/.exec(script)?.[1]
    assert.ok(bearer, 'the request carries Authorization: Bearer $VAR')
    const ref = envOf(container).find((e) => e.name === bearer)?.valueFrom?.secretKeyRef
    assert.ok(ref, `${bearer} must come from a Secret`)
    const example = one(all, 'Secret')
    assert.equal(ref.name, example.name)
    assert.ok(obj(example.body.stringData, 'stringData')[ref.key], `secret.example.yaml must document ${ref.key}`)
    assert.match(str(obj(example.body.stringData, 'stringData').API_KEYS, 'API_KEYS'), /:ingest:run:/, 'the example grants a key ingest:run')
  })

  test('KEDA scales the Deployment on the queue the service consumes', async () => {
    const all = await manifests()
    const deployment = one(all, 'Deployment')
    const scaled = one(all, 'ScaledObject')
    assert.deepEqual(
      { kind: dig(scaled.body, 'spec.scaleTargetRef.kind'), name: dig(scaled.body, 'spec.scaleTargetRef.name') },
      { kind: 'Deployment', name: deployment.name },
    )
    const [trigger] = list(dig(scaled.body, 'spec.triggers'), 'triggers').map((t) => obj(t, 'trigger'))
    assert.equal(trigger?.type, 'aws-sqs-queue')
    const [container] = containers(deployment)
    assert.ok(container)
    const env = Object.fromEntries(envOf(container).map((e) => [e.name, e.value]))
    assert.equal(dig(trigger, 'metadata.queueURL'), env.SQS_QUEUE_URL)
    assert.equal(dig(trigger, 'metadata.awsRegion'), env.AWS_REGION)
    const auth = one(all, 'TriggerAuthentication')
    assert.equal(dig(trigger, 'authenticationRef.name'), auth.name)
    assert.ok(dig(auth.body, 'spec.podIdentity') ?? dig(auth.body, 'spec.secretTargetRef'), 'pod identity or a secret')
    assert.ok(Number(dig(scaled.body, 'spec.minReplicaCount')) >= 1, 'the pods also serve the API: never scale to zero')
  })

  test('the PodDisruptionBudget, the Service and the ServiceMonitor select the Deployment\'s pods', async () => {
    const all = await manifests()
    const deployment = one(all, 'Deployment')
    const podLabels = obj(dig(deployment.body, 'spec.template.metadata.labels'), 'pod labels')
    const selects = (selector: Json, labels: Json): boolean => Object.entries(selector).every(([k, v]) => labels[k] === v)
    assert.ok(selects(obj(dig(deployment.body, 'spec.selector.matchLabels'), 'deployment selector'), podLabels))
    const pdb = obj(dig(one(all, 'PodDisruptionBudget').body, 'spec.selector.matchLabels'), 'pdb selector')
    assert.deepEqual(pdb, obj(dig(deployment.body, 'spec.selector.matchLabels'), 'deployment selector'))
    const service = one(all, 'Service')
    assert.ok(selects(obj(dig(service.body, 'spec.selector'), 'service selector'), podLabels))
    const monitor = obj(dig(one(all, 'ServiceMonitor').body, 'spec.selector.matchLabels'), 'monitor selector')
    assert.ok(selects(monitor, obj(dig(service.body, 'metadata.labels'), 'service labels')))
  })
})

// ---------------------------------------------------------------------------------------------
// Dockerfile and the build

interface Instruction {
  stage: number
  keyword: string
  args: string
}

async function dockerfile(): Promise<Instruction[]> {
  const text = (await readFile(at('Dockerfile'), 'utf8')).replace(/\\\n/g, ' ')
  const instructions: Instruction[] = []
  let stage = -1
  for (const line of text.split('\n').map((l) => l.trim())) {
    if (line === '' || line.startsWith('#')) continue
    const [keyword = '', ...rest] = line.split(/\s+/)
    if (keyword.toUpperCase() === 'FROM') stage += 1
    instructions.push({ stage, keyword: keyword.toUpperCase(), args: rest.join(' ') })
  }
  return instructions
}

const BUILD_SCRIPT = 'tsc -p tsconfig.build.json && node scripts/copy-build-assets.mjs'
let built: Promise<string> | undefined
let buildDir: string | undefined
after(async () => {
  if (buildDir !== undefined) await rm(buildDir, { recursive: true, force: true })
})

/** `npm run build`, into a folder of its own inside node_modules so the output resolves packages. */
function buildOnce(): Promise<string> {
  built ??= (async () => {
    const cache = at('node_modules/.cache')
    await mkdir(cache, { recursive: true })
    const out = await mkdtemp(join(cache, 'login-ingest-deploy-test-'))
    buildDir = out
    // --noCheck: the emitted files are the same; type errors are `npm run typecheck`'s business.
    await run(process.execPath, [at('node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json', '--noCheck', '--outDir', out], { cwd: ROOT })
    await run(process.execPath, ['scripts/copy-build-assets.mjs', out], { cwd: ROOT })
    return out
  })()
  return built
}

/** Files and packages a compiled module reaches through static imports (what loads at start-up). */
async function staticImports(entry: string): Promise<{ files: Set<string>; packages: Set<string> }> {
  const files = new Set<string>()
  const packages = new Set<string>()
  const pending = [entry]
  while (pending.length > 0) {
    const file = pending.pop() as string
    if (files.has(file)) continue
    files.add(file)
    const source = ts.createSourceFile(file, await readFile(file, 'utf8'), ts.ScriptTarget.Latest, false, ts.ScriptKind.JS)
    for (const statement of source.statements) {
      if (!(ts.isImportDeclaration(statement) || ts.isExportDeclaration(statement)) || statement.moduleSpecifier === undefined) continue
      const specifier = (statement.moduleSpecifier as ts.StringLiteral).text
      if (specifier.startsWith('.')) pending.push(resolve(dirname(file), specifier))
      else if (!isBuiltin(specifier)) packages.add(specifier.split('/').slice(0, specifier.startsWith('@') ? 2 : 1).join('/'))
    }
  }
  return { files, packages }
}

describe('Dockerfile', () => {
  test('two stages on Node.js 24; the runtime one runs node as PID 1, as non-root, with a health check', async () => {
    const instructions = await dockerfile()
    const froms = instructions.filter((i) => i.keyword === 'FROM')
    assert.ok(froms.length >= 2, 'a build stage and a runtime stage')
    for (const from of froms) assert.match(from.args, /^node:24[-.\w]*\s+AS\s+\w+$/i)
    const last = froms.length - 1
    const runtime = instructions.filter((i) => i.stage === last)
    const user = runtime.filter((i) => i.keyword === 'USER').at(-1)?.args.split(':')[0]
    assert.ok(user !== undefined && user !== 'root' && user !== '0', `runtime USER ${String(user)} must not be root`)
    const env = runtime.filter((i) => i.keyword === 'ENV').map((i) => i.args).join(' ')
    assert.match(env, /\bNODE_ENV=production\b/)
    assert.match(env, /\bHOST=0\.0\.0\.0\b/)
    assert.match(runtime.find((i) => i.keyword === 'RUN' && /npm ci/.test(i.args))?.args ?? '', /--omit=dev\b.*--omit=optional\b|--omit=optional\b.*--omit=dev\b/)
    const healthcheck = runtime.find((i) => i.keyword === 'HEALTHCHECK')?.args ?? ''
    assert.match(healthcheck, /CMD \[.*\/healthz/)
    const cmd = JSON.parse(runtime.find((i) => i.keyword === 'CMD')?.args ?? 'null') as unknown
    assert.ok(Array.isArray(cmd), 'CMD in exec form, so node is PID 1 and receives SIGTERM')
    assert.equal(cmd[0], 'node')
    const exposed = runtime.find((i) => i.keyword === 'EXPOSE')?.args
    assert.equal(Number(exposed), loadConfig({}).PORT)
  })

  test('the build context keeps everything the build stage copies', async () => {
    const ignored = (await readFile(at('.dockerignore'), 'utf8')).split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'))
    for (const copy of (await dockerfile()).filter((i) => i.keyword === 'COPY' && !i.args.startsWith('--from'))) {
      for (const source of copy.args.split(/\s+/).slice(0, -1)) {
        await stat(at(source)) // exists
        const top = source.split('/')[0] as string
        assert.ok(!ignored.some((pattern) => pattern === top || pattern === source), `.dockerignore excludes ${source}, which the Dockerfile copies`)
      }
    }
    for (const secret of ['node_modules', '.data', '.env', 'dist', '.git']) assert.ok(ignored.includes(secret), `.dockerignore must exclude ${secret}`)
  })

  test('npm run build emits the CMD\'s entry point with its migrations, and it statically needs production dependencies only', async () => {
    const pkg = JSON.parse(await readFile(at('package.json'), 'utf8')) as { scripts: Record<string, string>; dependencies: Record<string, string> }
    assert.equal(pkg.scripts.build, BUILD_SCRIPT, 'this test builds the way npm run build does; update both together')
    const instructions = await dockerfile()
    const stages = Math.max(...instructions.map((i) => i.stage))
    const workdir = (stage: number): string => instructions.filter((i) => i.stage === stage && i.keyword === 'WORKDIR').at(-1)?.args ?? '/'
    const tsconfig = JSON.parse(await readFile(at('tsconfig.json'), 'utf8')) as { compilerOptions: { outDir: string } }
    // The runtime stage copies the build stage's outDir, and CMD runs a file inside it.
    const copy = instructions.find((i) => i.stage === stages && i.keyword === 'COPY' && i.args.startsWith('--from='))
    const [from, to] = (copy?.args ?? '').split(/\s+/).slice(1)
    assert.equal(from, posix.resolve(workdir(0), tsconfig.compilerOptions.outDir))
    const dist = posix.resolve(workdir(stages), to ?? '')
    const cmd = JSON.parse(instructions.find((i) => i.stage === stages && i.keyword === 'CMD')?.args ?? '[]') as string[]
    const entry = posix.resolve(workdir(stages), cmd[1] ?? '')
    assert.ok(entry.startsWith(`${dist}/`), `CMD ${entry} must lie in the copied build output ${dist}`)

    const out = await buildOnce()
    const server = join(out, posix.relative(dist, entry))
    await access(server)
    // migrate.js reads its SQL relative to itself: the compiled one must find the same migrations.
    const compiled = (await import(join(out, 'src/db/migrate.js'))) as { loadMigrations: typeof loadMigrations }
    assert.deepEqual(await compiled.loadMigrations(), await loadMigrations())

    const { files, packages } = await staticImports(server)
    assert.ok(packages.has('fastify'), 'the import walk must reach the app')
    const notProduction = [...packages].filter((p) => pkg.dependencies[p] === undefined)
    assert.deepEqual(notProduction, [], 'the runtime image installs only `dependencies`')
    const embedded = [...files].filter((f) => f.includes(`${join('src', 'embedded')}`))
    assert.deepEqual(embedded, [], 'PGlite and the emulator load only through dynamic imports')
  })
})

// ---------------------------------------------------------------------------------------------
// The compiled service with the compose configuration, end to end

async function freePort(): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  server.close()
  await once(server, 'close')
  return port
}

/** Series of the Prometheus text format: `name{a="b",...} value`. */
function parseMetrics(text: string): { name: string; labels: Record<string, string>; value: number }[] {
  return text.split('\n').filter((l) => l && !l.startsWith('#')).map((line) => {
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line)
    assert.ok(match, `metrics line ${line}`)
    const labels = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]))
    return { name: match[1] as string, labels, value: Number(match[3]) }
  })
}

test('the compiled service, configured as docker compose configures it, ingests the init hook\'s samples and stops cleanly', async (t) => {
  const [out, sqs, db] = await Promise.all([buildOnce(), startEmulator(t), testDatabase(t)])
  const hook = await runInitScript(sqs.endpoint)
  assert.equal(hook.code, 0, hook.output)

  // The compose environment, with the hosts of the compose network swapped for this machine's.
  const env: Record<string, string> = { ...(await loginIngestEnv()) }
  for (const [name, value] of Object.entries(env)) {
    if (!/^https?:\/\//.test(value) || new URL(value).hostname !== 'localstack') continue
    const queue = new URL(value).pathname.split('/').filter(Boolean).at(-1)
    env[name] = queue === undefined ? sqs.endpoint : await sqs.queueUrl(queue)
  }
  const port = await freePort()
  Object.assign(env, { DATABASE_URL: db.url, HOST: '127.0.0.1', PORT: String(port) }, db.server ? {} : { DATABASE_POOL_MAX: '1' })

  const child = spawn(process.execPath, [join(out, 'src/server.js')], { cwd: out, env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()))
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  const base = `http://127.0.0.1:${port}`
  const get = (path: string, key?: string): Promise<Response | null> =>
    fetch(`${base}${path}`, key === undefined ? {} : { headers: { authorization: `Bearer ${key}` } }).catch(() => null)
  const alive = (): void => assert.ok(child.exitCode === null && child.signalCode === null, `the service exited:\n${output}`)

  await waitFor(async () => {
    alive()
    return (await get('/readyz'))?.status === 200
  }, 30_000, 'GET /readyz to answer 200')
  const demoKey = await readmeDemoKey()
  let rows = 0
  await waitFor(async () => {
    alive()
    const response = await get('/logins?limit=1000', demoKey)
    rows = response?.ok ? ((await response.json()) as { items: unknown[] }).items.length : -1
    return rows === 99
  }, 30_000, 'the 99 valid samples in GET /logins')
  assert.equal((await get('/logins'))?.status, 401)

  // A batch's rows are visible once it commits; its counters move after its messages are
  // deleted, a moment later (and under load, several receives' batches later).
  let series: ReturnType<typeof parseMetrics> = []
  const count = (outcome: string): number | undefined => series.find((s) => s.name === 'login_ingest_messages_total' && s.labels.outcome === outcome)?.value
  await waitFor(async () => {
    series = parseMetrics(await (await get('/metrics'))?.text() ?? '')
    return count('deleted') === 100
  }, 30_000, 'the counters to count the 100 deleted messages').catch(() => {})
  assert.deepEqual(
    { received: count('received'), inserted: count('inserted'), rejected: count('rejected'), deleted: count('deleted') },
    { received: 100, inserted: 99, rejected: 1, deleted: 100 },
  )

  // Every series the alert rules select exists, with those label values, in what the service exports.
  const rules = one(await manifests(), 'PrometheusRule')
  const exprs = list(dig(rules.body, 'spec.groups'), 'groups')
    .flatMap((g) => list(obj(g, 'group').rules, 'rules'))
    .map((r) => str(obj(r, 'rule').expr, 'expr'))
  assert.ok(exprs.length >= 4)
  for (const expr of exprs) {
    for (const [, name, matchers = ''] of expr.matchAll(/(login_ingest_\w+)(?:\{([^}]*)\})?/g)) {
      const wanted = Object.fromEntries([...matchers.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]))
      const found = series.some((s) => s.name === name && Object.entries(wanted).every(([k, v]) => s.labels[k] === v))
      assert.ok(found, `${String(name)}{${matchers}} of rule "${expr}" is not in GET /metrics`)
    }
  }

  child.kill('SIGTERM')
  const [code, signal] = await Promise.race([
    exited,
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no exit 30 s after SIGTERM:\n${output}`)), 30_000).unref()),
  ])
  assert.deepEqual({ code, signal }, { code: 0, signal: null }, output)
  const [stored] = await db.sql<{ logins: number; rejected: number }[]>`
    SELECT (SELECT count(*)::int FROM user_logins) AS logins, (SELECT count(*)::int FROM rejected_messages) AS rejected`
  assert.deepEqual({ ...stored }, { logins: 99, rejected: 1 })
})
