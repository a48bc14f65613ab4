// Swagger UI as a person uses it, in a real browser (Debian's Chromium, driven by playwright-core;
// no browser download): open /docs, authorize with the demo key, "Try it out" on GET /logins,
// Execute, and get a full page of rows, not the one row a pre-filled example filter would give.
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { test } from 'node:test'
import { chromium } from 'playwright-core'
import { testLogins, sendMessages } from './messages.ts'
import { build, waitFor } from './helper.ts'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const noBrowser = existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH); .ci/run installs it`
if (noBrowser) console.log(`# swagger-ui.test.ts skipped: ${noBrowser}`)

test('Swagger UI: authorize with the demo key, Try it out on GET /logins, Execute: a full page of rows', { skip: noBrowser }, async (t) => {
  const { app, services, tokens, queue } = await build(t, { env: { WORKER_ENABLED: 'true' } })
  const logins = testLogins(120)
  await sendMessages(queue.client, queue.queueUrl, logins.map((l) => l.body))
  await waitFor(async () => {
    const [row] = await services.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM user_logins`
    return row?.n === logins.length
  }, 30_000, 'the logins to be stored')
  const address = await app.listen({ port: 0, host: '127.0.0.1' })

  // Flags that keep Chromium from calling out of this closed network at start; playwright gives
  // it a new, empty profile of its own.
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  })
  t.after(() => browser.close())
  const page = await browser.newPage()
  await page.goto(`${address}/docs`)

  await page.getByRole('button', { name: /authorize/i }).first().click()
  const dialog = page.locator('.modal-ux')
  await dialog.waitFor()
  assert.match(await dialog.innerText(), /secrets\.json|printed/i, 'the dialog says where the demo key is')
  await dialog.locator('input[type=text], input[type=password]').first().fill(tokens.all)
  await dialog.locator('button.modal-btn.authorize').click()
  await dialog.locator('button.btn-done').click()

  const operation = page.locator('.opblock-get').filter({ has: page.locator('[data-path="/logins"]') }).first()
  await operation.locator('.opblock-summary').click()
  await operation.getByRole('button', { name: /try it out/i }).click()
  const filled = await operation.locator('.parameters input[type=text]').evaluateAll((inputs) => inputs.map((i) => (i as unknown as { value: string }).value).filter((v) => v !== ''))
  assert.deepEqual(filled.filter((v) => !/^\d+$/.test(v)), [], 'no filter comes pre-filled (a page size may)')
  await operation.getByRole('button', { name: /execute/i }).click()
  const body = operation.locator('.live-responses-table .response-col_description .microlight, .live-responses-table .response-col_description pre').first()
  await body.waitFor({ timeout: 15_000 })
  const status = await operation.locator('.live-responses-table .response .response-col_status').first().innerText()
  assert.equal(status.trim(), '200')
  const items = (JSON.parse(await body.innerText()) as { items: unknown[] }).items
  const limit = Number(filled[0] ?? 100)
  assert.equal(items.length, Math.min(limit, logins.length), `a full page (limit ${limit})`)
})
