import { Type } from 'typebox';
import { ERROR_CODES } from '../errors.ts';

export const ErrorResponse = Type.Object(
  {
    error: Type.Object({
      code: Type.Enum(Object.keys(ERROR_CODES), { description: 'See docs/reference/errors.md' }),
      message: Type.String(),
      field: Type.Optional(Type.String({ description: 'The offending input field, when there is one' })),
    }),
  },
  { $id: 'ErrorResponse', description: 'Every error response has this shape' },
);

/** Error responses a route can give, by status, for its OpenAPI description. */
export function errorResponses(...statuses: number[]): Record<number, typeof ErrorResponse> {
  return Object.fromEntries(statuses.map((status) => [status, ErrorResponse]));
}
