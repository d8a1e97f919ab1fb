/**
 * The paging fields of a list query (GET /models, GET /audit): `limit`, and `cursor`, the opaque
 * `next_cursor` of the previous page. Each list has its own limits; the fields are written once.
 */
import { Type } from 'typebox';

export interface PageLimits {
  /** Items per page at most. */
  pageSizeMax: number;
  /** Items per page when `limit` is not given. */
  pageSizeDefault: number;
  /** Characters of a cursor at most. */
  cursorMaxLength: number;
}

/** `cursorNote` ends the cursor's description, e.g. ' (same sort)'. */
export function pageFields(limits: PageLimits, cursorNote = '') {
  return {
    limit: Type.Optional(
      Type.Integer({ minimum: 1, maximum: limits.pageSizeMax, default: limits.pageSizeDefault }),
    ),
    cursor: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: limits.cursorMaxLength,
        pattern: '^[A-Za-z0-9_-]+$',
        description: `Opaque \`next_cursor\` of the previous page${cursorNote}`,
      }),
    ),
  };
}
