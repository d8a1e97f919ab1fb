import { Ajv, type Options } from 'ajv';
import addFormats from 'ajv-formats';
import type { FastifySchemaCompiler, FastifySchemaValidationError } from 'fastify';
import { containsApiKey, redactApiKeys } from '../auth/api-key.ts';
import { isStorableDateTime } from '../db/postgres-timestamp.ts';

/**
 * Two validators: JSON bodies are checked strictly (`"42"` is not an integer, unknown fields are
 * rejected, never silently dropped), while the query string and path, which are text by nature, are
 * coerced to the schema's types. Both report every error's path so the error handler can name the field.
 *
 * Both refuse what PostgreSQL would refuse later (a 500 instead of a 400): `date-time` is a real calendar
 * date in the years 1 to 9999 (see ../db/postgres-timestamp.ts), and no text of any request part — a
 * value or a key, at any depth — holds a control character (NUL is refused in `text` and `jsonb`; the
 * others have no business in a filter, an id or a cursor either). Nor an API key: one sent as a value
 * instead of in `x-api-key` would be stored and shown wherever the value goes.
 */
function makeAjv(options: Options): Ajv {
  const ajv = new Ajv({
    removeAdditional: false,
    useDefaults: true,
    allErrors: false,
    strict: false,
    ...options,
  });
  addFormats.default(ajv);
  ajv.addFormat('date-time', { type: 'string', validate: isStorableDateTime });
  return ajv;
}

/** What {@link refusedText} finds: the ajv-shaped issue the error handler names the field from. */
export interface TextIssue {
  keyword: 'controlCharacter' | 'apiKey';
  instancePath: string;
  params: Record<string, never>;
  message: string;
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point.
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f]/;

function pointer(path: string, key: string): string {
  return `${path}/${key.replace(/~/g, '~0').replace(/\//g, '~1')}`;
}

function textIssue(text: string, path: string): TextIssue | undefined {
  if (CONTROL_CHARACTER.test(text)) {
    return {
      keyword: 'controlCharacter',
      instancePath: path,
      params: {},
      message: 'must not contain control characters (U+0000 to U+001F, U+007F)',
    };
  }
  if (containsApiKey(text)) {
    return {
      keyword: 'apiKey',
      instancePath: path,
      params: {},
      message: 'looks like an API key: send keys only in the x-api-key header',
    };
  }
  return undefined;
}

/** The first string (or object key) of `value` a request may not carry, with its JSON pointer. */
export function refusedText(value: unknown, path = ''): TextIssue | undefined {
  if (typeof value === 'string') return textIssue(value, path);
  if (typeof value !== 'object' || value === null) return undefined;
  if (Array.isArray(value)) {
    for (const [index, item] of value.entries()) {
      const issue = refusedText(item, `${path}/${index}`);
      if (issue !== undefined) return issue;
    }
    return undefined;
  }
  for (const [key, item] of Object.entries(value)) {
    // A key-shaped key is named redacted: the answer does not echo the key.
    const issue = textIssue(key, pointer(path, redactApiKeys(key))) ?? refusedText(item, pointer(path, key));
    if (issue !== undefined) return issue;
  }
  return undefined;
}

type Validator = ((data: unknown) => boolean) & { errors?: FastifySchemaValidationError[] | null };

export function schemaCompilers(): FastifySchemaCompiler<object> {
  const body = makeAjv({ coerceTypes: false });
  const text = makeAjv({ coerceTypes: true });
  return ({ schema, httpPart }) => {
    const validate = (httpPart === 'body' ? body : text).compile(schema);
    // Headers are the HTTP parser's business (it refuses control characters) and may carry the key.
    if (httpPart === 'headers') return validate;
    const checked: Validator = (data: unknown) => {
      const issue = refusedText(data);
      if (issue !== undefined) {
        checked.errors = [issue as unknown as FastifySchemaValidationError];
        return false;
      }
      const valid = validate(data);
      checked.errors = validate.errors;
      return valid;
    };
    return checked;
  };
}
