import { Type, type Static, type TSchema } from 'typebox'

/** Every error the API answers with: the HTTP status, its name and a message a caller can act on. */
export const ErrorResponse = Type.Object(
  {
    statusCode: Type.Integer({ examples: [400] }),
    error: Type.String({ examples: ['Bad Request'] }),
    message: Type.String({ examples: ['querystring/limit must be <= 1000'] }),
    requestId: Type.Optional(Type.String({ description: 'present on 500 answers; quote it to the operators' })),
  },
  { $id: 'ErrorResponse', description: 'Error; never carries PII or internal details' },
)

export const errorRef = Type.Ref('ErrorResponse')

/** Responses every authenticated route can give, besides its own. */
export const authErrors = {
  400: errorRef,
  401: errorRef,
  403: errorRef,
  429: errorRef,
  500: errorRef,
  503: errorRef,
} as const

/** Page size of every paged route. */
export const Limit = Type.Integer({ minimum: 1, maximum: 1000, default: 100, description: 'page size, 1-1000', examples: [50] })

/** The `next` value of the previous page. */
export const Cursor = Type.String({ minLength: 1, maxLength: 1000, description: 'the `next` value of the previous page (opaque, signed)' })

/**
 * A value or null in a response, as one schema with `type: [T, 'null']` (the document says `nullable: true`).
 * `Union([T, Null])` became `anyOf`, which fast-json-stringify serializes by validating every
 * value against each branch (formats included) on every page.
 */
export const Nullable = <T extends TSchema>(schema: T, options: { description?: string } = {}) =>
  Type.Unsafe<Static<T> | null>({ ...schema, ...options, type: [(schema as unknown as { type: string }).type, 'null'] })

/** The `next` of every page. */
export const NextCursor = Nullable(Type.String(), { description: 'cursor of the next page; null on the last page' })
