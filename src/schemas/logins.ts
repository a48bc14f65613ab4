import { Type, type Static, type TSchema } from 'typebox'

/**
 * A value or null, as one schema with `type: [T, 'null']` (the document says `nullable: true`).
 * `Union([T, Null])` became `anyOf`, which fast-json-stringify serializes by validating every
 * value against each branch (formats included) on every page.
 */
const Nullable = <T extends TSchema>(schema: T, options: { description?: string } = {}) =>
  Type.Unsafe<Static<T> | null>({ ...schema, ...options, type: [(schema as unknown as { type: string }).type, 'null'] })

/** A login as the API shows it: masked values only, never the originals. */
export const Login = Type.Object(
  {
    id: Type.String({ description: 'row id (bigint as a string)' }),
    user_id: Nullable(Type.String()),
    device_type: Nullable(Type.String()),
    masked_ip: Nullable(Type.String(), { description: '<key id>:<base64url HMAC-SHA256>' }),
    masked_device_id: Nullable(Type.String()),
    locale: Nullable(Type.String()),
    app_version: Nullable(Type.Integer(), { description: 'order-preserving integer encoding of app_version_text' }),
    app_version_text: Nullable(Type.String(), { description: 'the version as sent' }),
    create_date: Nullable(Type.String({ format: 'date' }), { description: 'UTC date of the SQS SentTimestamp' }),
    message_id: Nullable(Type.String(), { description: 'SQS message id; null for rows that predate the service' }),
    mask_key_id: Nullable(Type.String()),
    masked_ip_prefix: Nullable(Type.String(), {
      description: '<key id>:<prefix-preserving pseudonym of the ip (ipcrypt-pfx)>; null when IP_PREFIX_KEYS is off, the ip is not an address, or its originals were erased',
    }),
    ingested_at: Nullable(Type.String({ format: 'date-time' })),
  },
  { $id: 'Login' },
)
export type Login = Static<typeof Login>

export const LoginPage = Type.Object(
  {
    items: Type.Array(Type.Ref('Login')),
    next: Nullable(Type.String(), { description: 'cursor of the next page; null on the last page' }),
  },
  { $id: 'LoginPage' },
)
