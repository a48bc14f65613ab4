import { Type, type Static } from 'typebox'
import { NextCursor, Nullable } from './common.ts'

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
    next: NextCursor,
  },
  { $id: 'LoginPage' },
)
