import { Type, type Static } from 'typebox'

/** A login as the API shows it: masked values only, never the originals. */
export const Login = Type.Object(
  {
    id: Type.String({ description: 'row id (bigint as a string)' }),
    user_id: Type.Union([Type.String(), Type.Null()]),
    device_type: Type.Union([Type.String(), Type.Null()]),
    masked_ip: Type.Union([Type.String(), Type.Null()], { description: '<key id>:<base64url HMAC-SHA256>' }),
    masked_device_id: Type.Union([Type.String(), Type.Null()]),
    locale: Type.Union([Type.String(), Type.Null()]),
    app_version: Type.Union([Type.Integer(), Type.Null()], { description: 'order-preserving integer encoding of app_version_text' }),
    app_version_text: Type.Union([Type.String(), Type.Null()], { description: 'the version as sent' }),
    create_date: Type.Union([Type.String({ format: 'date' }), Type.Null()], { description: 'UTC date of the SQS SentTimestamp' }),
    message_id: Type.Union([Type.String(), Type.Null()], { description: 'SQS message id; null for rows that predate the service' }),
    mask_key_id: Type.Union([Type.String(), Type.Null()]),
    ingested_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  },
  { $id: 'Login' },
)
export type Login = Static<typeof Login>

export const LoginPage = Type.Object(
  {
    items: Type.Array(Type.Ref('Login')),
    next: Type.Union([Type.String(), Type.Null()], { description: 'cursor of the next page; null on the last page' }),
  },
  { $id: 'LoginPage' },
)
