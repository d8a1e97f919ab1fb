import { Ajv, type Options } from 'ajv';
import addFormats from 'ajv-formats';
import type { FastifySchemaCompiler } from 'fastify';

/**
 * Two validators: JSON bodies are checked strictly (`"42"` is not an integer, unknown fields are
 * rejected, never silently dropped), while the query string and path, which are text by nature, are
 * coerced to the schema's types. Both report every error's path so the error handler can name the field.
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
  return ajv;
}

export function schemaCompilers(): FastifySchemaCompiler<object> {
  const body = makeAjv({ coerceTypes: false });
  const text = makeAjv({ coerceTypes: true });
  return ({ schema, httpPart }) => (httpPart === 'body' ? body : text).compile(schema);
}
