import { Type } from 'typebox'

/** Every error the API answers with: the HTTP status, its name and a message a caller can act on. */
export const ErrorResponse = Type.Object(
  {
    statusCode: Type.Integer(),
    error: Type.String(),
    message: Type.String(),
    requestId: Type.Optional(Type.String()),
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
} as const
