/**
 * Malformed input, row by row: every bad body, query string or path parameter gets the exact status,
 * error code and offending `field` of the error envelope, never a 5xx, and leaves the database as it was.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { ErrorCode } from '../../src/errors.ts';
import { CreateModelBody } from '../../src/registry/model-schemas.ts';
import { build } from '../helper.ts';

const { app, services, keys } = await build({ after });

/** The model PATCH rows aim at; its row must come out of every row untouched. */
const TARGET = 'bad-input/target-1';
const TARGET_URL = `/models/${encodeURIComponent(TARGET)}`;
/** A model_id no row may ever create. */
const NEW_ID = 'bad-input/new';

const JSON_TYPE = 'application/json';
const SQL = "x'; DROP TABLE models;--";
const EMOJI = '🤖-model';
const NUL = '\u0000';
const HUGE = 2 ** 53;
const OVER_64_KIB = 64 * 1024 + 1;

function validBody(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    model_id: NEW_ID,
    vendor_id: 'OpenAI',
    capability_tier: 'Tier_2',
    context_window: 8192,
    cost_in_per_mil: 1.5,
    cost_out_per_mil: 2,
    function_call_support: false,
    ...overrides,
  };
}

/** A valid create body as JSON text, with fields replaced or (given `undefined`) removed. */
const create = (overrides: Record<string, unknown> = {}): string => JSON.stringify(validBody(overrides));
const patch = (body: Record<string, unknown>): string => JSON.stringify(body);
const cursorOf = (payload: unknown): string => Buffer.from(JSON.stringify(payload)).toString('base64url');
const rawCursor = (text: string): string => Buffer.from(text).toString('base64url');
const q = (params: Record<string, string>): string => `/models?${new URLSearchParams(params)}`;

interface Row {
  name: string;
  method: 'GET' | 'POST' | 'PATCH';
  url: string;
  /** Raw body text; sent with `contentType`. */
  payload?: string;
  /** The content-type header; `application/json` when a payload is given, none when null. */
  contentType?: string | null;
  /** The API key sent: the writer's unless said otherwise; null sends none. */
  key?: 'reader' | 'writer' | 'admin' | 'unknown' | null;
  status: number;
  code: ErrorCode;
  /** The expected `field` of the error body; undefined when the body must have none. */
  field: string | undefined;
}

const post = (
  name: string,
  payload: string,
  status: number,
  code: ErrorCode,
  field: string | undefined,
): Row => ({
  name: `POST /models: ${name}`,
  method: 'POST',
  url: '/models',
  payload,
  status,
  code,
  field,
});
const invalidPost = (name: string, payload: string, field: string): Row =>
  post(name, payload, 400, 'VALIDATION_FAILED', field);
const invalidPatch = (name: string, payload: string, field: string, url = TARGET_URL): Row => ({
  name: `PATCH ${url.slice(0, 40)}: ${name}`,
  method: 'PATCH',
  url,
  payload,
  status: 400,
  code: 'VALIDATION_FAILED',
  field,
});
const invalidGet = (name: string, url: string, field: string): Row => ({
  name: `GET ${name}`,
  method: 'GET',
  url,
  status: 400,
  code: 'VALIDATION_FAILED',
  field,
});

const REQUIRED = CreateModelBody.required;

const rows: Row[] = [
  // ── POST /models: missing fields ───────────────────────────────────────────────────────────────────
  ...REQUIRED.map((field) => invalidPost(`missing ${field}`, create({ [field]: undefined }), field)),
  invalidPost('empty object', '{}', 'model_id'),
  // ── POST /models: model_id ─────────────────────────────────────────────────────────────────────────
  invalidPost('model_id empty', create({ model_id: '' }), 'model_id'),
  invalidPost('model_id of 129 characters', create({ model_id: 'a'.repeat(129) }), 'model_id'),
  invalidPost('model_id with emoji', create({ model_id: EMOJI }), 'model_id'),
  invalidPost("model_id '.' (a URL dot segment)", create({ model_id: '.' }), 'model_id'),
  invalidPost("model_id '..' (a URL dot segment)", create({ model_id: '..' }), 'model_id'),
  invalidPost('model_id with accented letter', create({ model_id: 'modèle-1' }), 'model_id'),
  invalidPost('model_id with a lone surrogate', create({ model_id: 'a\ud800b' }), 'model_id'),
  invalidPost('model_id SQL fragment', create({ model_id: SQL }), 'model_id'),
  invalidPost('model_id with NUL', create({ model_id: `a${NUL}b` }), 'model_id'),
  invalidPost('model_id with a space', create({ model_id: 'gpt 4' }), 'model_id'),
  invalidPost('model_id with a trailing newline', create({ model_id: 'gpt-4\n' }), 'model_id'),
  invalidPost('model_id a number', create({ model_id: 42 }), 'model_id'),
  invalidPost('model_id null', create({ model_id: null }), 'model_id'),
  invalidPost('model_id an array', create({ model_id: ['gpt-4'] }), 'model_id'),
  // ── POST /models: vendor_id and capability_tier ────────────────────────────────────────────────────
  invalidPost('vendor_id SQL fragment', create({ vendor_id: SQL }), 'vendor_id'),
  invalidPost('vendor_id empty', create({ vendor_id: '' }), 'vendor_id'),
  invalidPost('vendor_id of 65 characters', create({ vendor_id: 'V'.repeat(65) }), 'vendor_id'),
  invalidPost('vendor_id starting with a space', create({ vendor_id: ' OpenAI' }), 'vendor_id'),
  invalidPost('vendor_id with NUL', create({ vendor_id: `Open${NUL}AI` }), 'vendor_id'),
  invalidPost('vendor_id with emoji', create({ vendor_id: '🤖' }), 'vendor_id'),
  invalidPost('vendor_id an object', create({ vendor_id: { name: 'OpenAI' } }), 'vendor_id'),
  invalidPost('capability_tier Tier_5', create({ capability_tier: 'Tier_5' }), 'capability_tier'),
  invalidPost('capability_tier lower case', create({ capability_tier: 'tier_1' }), 'capability_tier'),
  invalidPost('capability_tier a number', create({ capability_tier: 1 }), 'capability_tier'),
  // ── POST /models: context_window ──────────────────────────────────────────────────────────────────
  invalidPost('context_window 0', create({ context_window: 0 }), 'context_window'),
  invalidPost('context_window negative', create({ context_window: -1 }), 'context_window'),
  invalidPost('context_window 1.5', create({ context_window: 1.5 }), 'context_window'),
  invalidPost('context_window a numeric string', create({ context_window: '128000' }), 'context_window'),
  invalidPost('context_window 2^53', create({ context_window: HUGE }), 'context_window'),
  invalidPost('context_window above int4', create({ context_window: 2 ** 31 }), 'context_window'),
  invalidPost('context_window just above the maximum', create({ context_window: 1e9 + 1 }), 'context_window'),
  invalidPost(
    'context_window 1e400',
    create({ context_window: 0 }).replace('"context_window":0', '"context_window":1e400'),
    'context_window',
  ),
  invalidPost(
    'context_window -1e400',
    create({ context_window: 0 }).replace('"context_window":0', '"context_window":-1e400'),
    'context_window',
  ),
  invalidPost('context_window null', create({ context_window: null }), 'context_window'),
  invalidPost('context_window a boolean', create({ context_window: true }), 'context_window'),
  // ── POST /models: costs ───────────────────────────────────────────────────────────────────────────
  invalidPost('cost_in_per_mil negative', create({ cost_in_per_mil: -0.01 }), 'cost_in_per_mil'),
  invalidPost('cost_in_per_mil a numeric string', create({ cost_in_per_mil: '10' }), 'cost_in_per_mil'),
  invalidPost(
    'cost_in_per_mil 1e400',
    create({ cost_in_per_mil: 0 }).replace('"cost_in_per_mil":0', '"cost_in_per_mil":1e400'),
    'cost_in_per_mil',
  ),
  invalidPost(
    'cost_in_per_mil above the maximum',
    create({ cost_in_per_mil: 1_000_000.0001 }),
    'cost_in_per_mil',
  ),
  invalidPost('cost_in_per_mil null', create({ cost_in_per_mil: null }), 'cost_in_per_mil'),
  invalidPost('cost_out_per_mil 2^53', create({ cost_out_per_mil: HUGE }), 'cost_out_per_mil'),
  invalidPost('cost_out_per_mil an object', create({ cost_out_per_mil: { usd: 1 } }), 'cost_out_per_mil'),
  // ── POST /models: booleans ────────────────────────────────────────────────────────────────────────
  invalidPost(
    'function_call_support a string',
    create({ function_call_support: 'true' }),
    'function_call_support',
  ),
  invalidPost('function_call_support 1', create({ function_call_support: 1 }), 'function_call_support'),
  invalidPost('function_call_support null', create({ function_call_support: null }), 'function_call_support'),
  invalidPost('is_active a string', create({ is_active: 'false' }), 'is_active'),
  invalidPost('is_active 0', create({ is_active: 0 }), 'is_active'),
  // ── POST /models: unknown fields ──────────────────────────────────────────────────────────────────
  invalidPost('unknown field', create({ foo: 'bar' }), 'foo'),
  invalidPost('read-only version', create({ version: 5 }), 'version'),
  invalidPost('read-only created_at', create({ created_at: '2020-01-01T00:00:00.000Z' }), 'created_at'),
  invalidPost('unknown field named like SQL', create({ [SQL]: 1 }), SQL),
  // ── POST /models: not a JSON object ───────────────────────────────────────────────────────────────
  invalidPost('JSON array', '[]', 'body'),
  invalidPost('JSON array of a valid body', `[${create()}]`, 'body'),
  invalidPost('JSON string', '"model"', 'body'),
  invalidPost('JSON number', '42', 'body'),
  invalidPost('JSON null', 'null', 'body'),
  invalidPost('empty body', '', 'body'),
  invalidPost('truncated JSON', create().slice(0, -1), 'body'),
  invalidPost('trailing comma', create().replace(/}$/, ',}'), 'body'),
  invalidPost('single quotes', "{'model_id':'x'}", 'body'),
  invalidPost('raw NUL byte inside a string', create().replace(NEW_ID, `bad${NUL}id`), 'body'),
  invalidPost('__proto__ key', create().replace(/^{/, '{"__proto__":{"is_admin":true},'), 'body'),
  invalidPost(
    'constructor.prototype key',
    create().replace(/^{/, '{"constructor":{"prototype":{"x":1}},'),
    'body',
  ),
  // ── POST /models: transport ───────────────────────────────────────────────────────────────────────
  post(
    'body over 64 KiB',
    create({ vendor_id: 'V'.repeat(OVER_64_KIB) }),
    413,
    'PAYLOAD_TOO_LARGE',
    undefined,
  ),
  {
    ...post('text/plain body', create(), 415, 'UNSUPPORTED_MEDIA_TYPE', 'content-type'),
    contentType: 'text/plain',
  },
  {
    ...post('form body', 'model_id=x', 415, 'UNSUPPORTED_MEDIA_TYPE', 'content-type'),
    contentType: 'application/x-www-form-urlencoded',
  },
  {
    ...post('multipart body', create(), 415, 'UNSUPPORTED_MEDIA_TYPE', 'content-type'),
    contentType: 'multipart/form-data; boundary=x',
  },
  {
    ...post('body without content-type', create(), 415, 'UNSUPPORTED_MEDIA_TYPE', 'content-type'),
    contentType: null,
  },
  { ...post('no API key', create(), 401, 'UNAUTHENTICATED', 'x-api-key'), key: null },
  { ...post('unknown API key', create(), 401, 'UNAUTHENTICATED', 'x-api-key'), key: 'unknown' },
  { ...post('reader key', create(), 403, 'FORBIDDEN', undefined), key: 'reader' },
  post('model_id already registered', create({ model_id: TARGET }), 409, 'MODEL_ALREADY_EXISTS', 'model_id'),

  // ── PATCH /models/:model_id ──────────────────────────────────────────────────────────────────────
  invalidPatch('empty object', '{}', 'body'),
  invalidPatch('JSON null', 'null', 'body'),
  invalidPatch('JSON array', '[{"context_window":1}]', 'body'),
  invalidPatch('JSON string', '"Tier_1"', 'body'),
  invalidPatch('empty body', '', 'body'),
  invalidPatch('invalid JSON', '{"context_window":', 'body'),
  invalidPatch('model_id cannot change', patch({ model_id: 'renamed' }), 'model_id'),
  invalidPatch('read-only version', patch({ version: 99 }), 'version'),
  invalidPatch('read-only updated_at', patch({ updated_at: '2020-01-01T00:00:00.000Z' }), 'updated_at'),
  invalidPatch('unknown field besides a valid one', patch({ context_window: 10, bogus: 1 }), 'bogus'),
  invalidPatch('context_window 0', patch({ context_window: 0 }), 'context_window'),
  invalidPatch('context_window -5', patch({ context_window: -5 }), 'context_window'),
  invalidPatch('context_window 1.5', patch({ context_window: 1.5 }), 'context_window'),
  invalidPatch('context_window 2^53', patch({ context_window: HUGE }), 'context_window'),
  invalidPatch('context_window a string', patch({ context_window: '4096' }), 'context_window'),
  invalidPatch('cost_out_per_mil negative', patch({ cost_out_per_mil: -1 }), 'cost_out_per_mil'),
  invalidPatch('cost_in_per_mil 1e400', '{"cost_in_per_mil":1e400}', 'cost_in_per_mil'),
  invalidPatch('capability_tier Tier_0', patch({ capability_tier: 'Tier_0' }), 'capability_tier'),
  invalidPatch('vendor_id SQL fragment', patch({ vendor_id: SQL }), 'vendor_id'),
  invalidPatch('vendor_id with NUL', patch({ vendor_id: `a${NUL}` }), 'vendor_id'),
  invalidPatch('is_active a string', patch({ is_active: 'no' }), 'is_active'),
  invalidPatch('is_active null', patch({ is_active: null }), 'is_active'),
  invalidPatch('path id with a space', patch({ context_window: 1 }), 'model_id', '/models/bad%20id'),
  invalidPatch(
    'path id with emoji',
    patch({ context_window: 1 }),
    'model_id',
    `/models/${encodeURIComponent(EMOJI)}`,
  ),
  invalidPatch(
    'path id SQL fragment',
    patch({ context_window: 1 }),
    'model_id',
    `/models/${encodeURIComponent(SQL)}`,
  ),
  invalidPatch('path id with NUL', patch({ context_window: 1 }), 'model_id', '/models/a%00b'),
  invalidPatch('empty path id', patch({ context_window: 1 }), 'model_id', '/models/'),
  invalidPatch(
    'path id of 129 characters',
    patch({ context_window: 1 }),
    'model_id',
    `/models/${'a'.repeat(129)}`,
  ),
  {
    name: 'PATCH: body over 64 KiB',
    method: 'PATCH',
    url: TARGET_URL,
    payload: patch({ vendor_id: 'V'.repeat(OVER_64_KIB) }),
    status: 413,
    code: 'PAYLOAD_TOO_LARGE',
    field: undefined,
  },
  {
    name: 'PATCH: text/plain body',
    method: 'PATCH',
    url: TARGET_URL,
    payload: patch({ context_window: 1 }),
    contentType: 'text/plain',
    status: 415,
    code: 'UNSUPPORTED_MEDIA_TYPE',
    field: 'content-type',
  },
  {
    name: 'PATCH: model that does not exist',
    method: 'PATCH',
    url: '/models/bad-input%2Fmissing',
    payload: patch({ context_window: 1 }),
    status: 404,
    code: 'MODEL_NOT_FOUND',
    field: 'model_id',
  },
  {
    name: 'PATCH: reader key',
    method: 'PATCH',
    url: TARGET_URL,
    payload: patch({ context_window: 1 }),
    key: 'reader',
    status: 403,
    code: 'FORBIDDEN',
    field: undefined,
  },
  {
    name: 'PATCH: no API key',
    method: 'PATCH',
    url: TARGET_URL,
    payload: patch({ context_window: 1 }),
    key: null,
    status: 401,
    code: 'UNAUTHENTICATED',
    field: 'x-api-key',
  },

  // ── GET /models?… ────────────────────────────────────────────────────────────────────────────────
  invalidGet('limit=0', q({ limit: '0' }), 'limit'),
  invalidGet('limit=201', q({ limit: '201' }), 'limit'),
  invalidGet('limit=-1', q({ limit: '-1' }), 'limit'),
  invalidGet('limit=1.5', q({ limit: '1.5' }), 'limit'),
  invalidGet('limit=abc', q({ limit: 'abc' }), 'limit'),
  invalidGet('limit empty', '/models?limit=', 'limit'),
  invalidGet('limit=1e400', q({ limit: '1e400' }), 'limit'),
  invalidGet('limit=2^53+1', q({ limit: '9007199254740993' }), 'limit'),
  invalidGet('limit twice', '/models?limit=1&limit=2', 'limit'),
  invalidGet('sort unknown', q({ sort: 'price' }), 'sort'),
  invalidGet('sort --model_id', q({ sort: '--model_id' }), 'sort'),
  invalidGet('sort is_active (not sortable)', q({ sort: 'is_active' }), 'sort'),
  invalidGet('sort SQL fragment', q({ sort: 'model_id; DROP TABLE models;--' }), 'sort'),
  invalidGet('sort twice', '/models?sort=model_id&sort=-model_id', 'sort'),
  invalidGet('vendor_id SQL fragment', q({ vendor_id: SQL }), 'vendor_id'),
  invalidGet('vendor_id NUL', '/models?vendor_id=%00', 'vendor_id'),
  invalidGet('vendor_id emoji', q({ vendor_id: EMOJI }), 'vendor_id'),
  invalidGet('vendor_id empty', '/models?vendor_id=', 'vendor_id'),
  invalidGet('vendor_id twice', '/models?vendor_id=OpenAI&vendor_id=Meta', 'vendor_id'),
  invalidGet('capability_tier Tier_9', q({ capability_tier: 'Tier_9' }), 'capability_tier'),
  invalidGet('is_active=yes', q({ is_active: 'yes' }), 'is_active'),
  invalidGet('is_active empty', '/models?is_active=', 'is_active'),
  invalidGet('is_active twice', '/models?is_active=true&is_active=false', 'is_active'),
  invalidGet('function_call_support=maybe', q({ function_call_support: 'maybe' }), 'function_call_support'),
  invalidGet('min_context_window=0', q({ min_context_window: '0' }), 'min_context_window'),
  invalidGet('min_context_window=-5', q({ min_context_window: '-5' }), 'min_context_window'),
  invalidGet('min_context_window=1.5', q({ min_context_window: '1.5' }), 'min_context_window'),
  invalidGet('min_context_window=1e400', q({ min_context_window: '1e400' }), 'min_context_window'),
  invalidGet('min_context_window=abc', q({ min_context_window: 'abc' }), 'min_context_window'),
  invalidGet('max_cost_in_per_mil=-1', q({ max_cost_in_per_mil: '-1' }), 'max_cost_in_per_mil'),
  invalidGet('max_cost_in_per_mil=1e400', q({ max_cost_in_per_mil: '1e400' }), 'max_cost_in_per_mil'),
  invalidGet('max_cost_in_per_mil=NaN', q({ max_cost_in_per_mil: 'NaN' }), 'max_cost_in_per_mil'),
  invalidGet('max_cost_out_per_mil=1000001', q({ max_cost_out_per_mil: '1000001' }), 'max_cost_out_per_mil'),
  invalidGet(
    'max_cost_out_per_mil SQL fragment',
    q({ max_cost_out_per_mil: '1 OR 1=1' }),
    'max_cost_out_per_mil',
  ),
  invalidGet('unknown parameter', q({ foo: '1' }), 'foo'),
  invalidGet('model_id is not a filter', q({ model_id: 'x' }), 'model_id'),
  // Cursors: malformed, tampered, or from another sort.
  invalidGet('cursor with bad characters', q({ cursor: '!!!' }), 'cursor'),
  invalidGet(
    'cursor with base64 padding',
    q({ cursor: `${cursorOf({ s: 'model_id', v: 'a', id: 'a' })}==` }),
    'cursor',
  ),
  invalidGet('cursor empty', '/models?cursor=', 'cursor'),
  invalidGet('cursor of 513 characters', q({ cursor: 'A'.repeat(513) }), 'cursor'),
  invalidGet(
    'cursor twice',
    `/models?cursor=${cursorOf({ s: 'model_id', v: 'a', id: 'a' })}&cursor=abc`,
    'cursor',
  ),
  invalidGet('cursor that is not JSON', q({ cursor: rawCursor('not json') }), 'cursor'),
  invalidGet('cursor that is a JSON number', q({ cursor: rawCursor('42') }), 'cursor'),
  invalidGet('cursor that is JSON null', q({ cursor: rawCursor('null') }), 'cursor'),
  invalidGet('cursor that is a JSON array', q({ cursor: rawCursor('["model_id","a","a"]') }), 'cursor'),
  invalidGet('cursor without id', q({ cursor: cursorOf({ s: 'model_id', v: 'a' }) }), 'cursor'),
  invalidGet(
    'cursor with a boolean value',
    q({ cursor: cursorOf({ s: 'model_id', v: true, id: 'a' }) }),
    'cursor',
  ),
  invalidGet(
    'cursor of another sort',
    q({ cursor: cursorOf({ s: '-model_id', v: 'a', id: 'a' }) }),
    'cursor',
  ),
  invalidGet(
    'cursor of another sort field',
    q({ sort: 'context_window', cursor: cursorOf({ s: 'vendor_id', v: 'a', id: 'a' }) }),
    'cursor',
  ),
  invalidGet(
    'cursor with a text value for an integer sort',
    q({ sort: 'context_window', cursor: cursorOf({ s: 'context_window', v: 'abc', id: 'a' }) }),
    'cursor',
  ),
  invalidGet(
    'cursor with a value beyond int4',
    q({ sort: 'context_window', cursor: cursorOf({ s: 'context_window', v: HUGE, id: 'a' }) }),
    'cursor',
  ),
  invalidGet(
    'cursor with a fractional value for an integer sort',
    q({ sort: '-context_window', cursor: cursorOf({ s: '-context_window', v: 1.5, id: 'a' }) }),
    'cursor',
  ),
  invalidGet(
    'cursor with value 1e400',
    q({ sort: 'cost_in_per_mil', cursor: rawCursor('{"s":"cost_in_per_mil","v":1e400,"id":"a"}') }),
    'cursor',
  ),
  invalidGet(
    'cursor with a text value for a cost sort',
    q({
      sort: 'cost_out_per_mil',
      cursor: cursorOf({ s: 'cost_out_per_mil', v: '1; DROP TABLE models', id: 'a' }),
    }),
    'cursor',
  ),
  invalidGet(
    'cursor with a number for a timestamp sort',
    q({ sort: 'created_at', cursor: cursorOf({ s: 'created_at', v: 5, id: 'a' }) }),
    'cursor',
  ),
  invalidGet(
    'cursor with an impossible date',
    q({
      sort: '-updated_at',
      cursor: cursorOf({ s: '-updated_at', v: '2024-02-30T00:00:00.000Z', id: 'a' }),
    }),
    'cursor',
  ),
  invalidGet(
    'cursor with a non-date string for a timestamp sort',
    q({ sort: 'updated_at', cursor: cursorOf({ s: 'updated_at', v: SQL, id: 'a' }) }),
    'cursor',
  ),
  invalidGet(
    'cursor whose id has NUL',
    q({ cursor: cursorOf({ s: 'model_id', v: 'a', id: `a${NUL}` }) }),
    'cursor',
  ),
  invalidGet('cursor whose id is SQL', q({ cursor: cursorOf({ s: 'model_id', v: SQL, id: SQL }) }), 'cursor'),
  invalidGet('cursor whose id is empty', q({ cursor: cursorOf({ s: 'model_id', v: '', id: '' }) }), 'cursor'),
  invalidGet(
    'cursor whose text value has NUL',
    q({ sort: 'vendor_id', cursor: cursorOf({ s: 'vendor_id', v: `a${NUL}`, id: 'a' }) }),
    'cursor',
  ),
  { ...invalidGet('no API key', '/models', 'x-api-key'), status: 401, code: 'UNAUTHENTICATED', key: null },

  // ── GET /models/:model_id ────────────────────────────────────────────────────────────────────────
  invalidGet('id with a space', '/models/bad%20id', 'model_id'),
  invalidGet('id with emoji', `/models/${encodeURIComponent(EMOJI)}`, 'model_id'),
  invalidGet('id with an accented letter', `/models/${encodeURIComponent('modèle')}`, 'model_id'),
  invalidGet('id SQL fragment', `/models/${encodeURIComponent(SQL)}`, 'model_id'),
  invalidGet('id with NUL', '/models/a%00b', 'model_id'),
  invalidGet('id with a percent-encoded newline', '/models/a%0A', 'model_id'),
  invalidGet('id of 129 characters', `/models/${'a'.repeat(129)}`, 'model_id'),
  invalidGet('empty id', '/models/', 'model_id'),
  {
    name: 'GET an id with an unencoded slash',
    method: 'GET',
    url: '/models/openai/gpt-4',
    status: 404,
    code: 'ROUTE_NOT_FOUND',
    field: undefined,
  },
  {
    name: 'GET a model that does not exist',
    method: 'GET',
    url: '/models/bad-input%2Fmissing',
    status: 404,
    code: 'MODEL_NOT_FOUND',
    field: 'model_id',
  },
  {
    name: 'GET an id with a broken percent-escape',
    method: 'GET',
    url: '/models/%ZZ',
    status: 400,
    code: 'VALIDATION_FAILED',
    field: 'url',
  },
  {
    name: 'GET an id longer than the router allows',
    method: 'GET',
    url: `/models/${'a'.repeat(400)}`,
    status: 400,
    code: 'VALIDATION_FAILED',
    field: 'url',
  },
  {
    ...invalidGet('a model with an unknown key', TARGET_URL, 'x-api-key'),
    status: 401,
    code: 'UNAUTHENTICATED',
    key: 'unknown',
  },
];

async function countModels(): Promise<number> {
  const { rows } = await services.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM models');
  return rows[0]?.n ?? -1;
}

async function targetRow(): Promise<unknown> {
  const { rows } = await services.pool.query('SELECT * FROM models WHERE model_id = $1', [TARGET]);
  return rows[0];
}

before(async () => {
  for (const model_id of [TARGET, 'bad-input/target-2']) {
    const response = await app.inject({
      method: 'POST',
      url: '/models',
      headers: { 'x-api-key': keys.writer },
      payload: validBody({ model_id }),
    });
    assert.equal(response.statusCode, 201, response.body);
  }
});

test('the table is large enough and its names are unique', () => {
  assert.ok(rows.length >= 30);
  assert.equal(new Set(rows.map((row) => row.name)).size, rows.length);
});

for (const row of rows) {
  test(row.name, async () => {
    const countBefore = await countModels();
    const targetBefore = await targetRow();
    const headers: Record<string, string> = {};
    if (row.key !== null)
      headers['x-api-key'] = row.key === 'unknown' ? 'tb_not-a-real-key' : keys[row.key ?? 'writer'];
    if (row.payload !== undefined && row.contentType !== null)
      headers['content-type'] = row.contentType ?? JSON_TYPE;

    const response = await app.inject({
      method: row.method,
      url: row.url,
      headers,
      ...(row.payload === undefined ? {} : { payload: row.payload }),
    });

    assert.ok(response.statusCode < 500, `never a 5xx, got ${response.statusCode}: ${response.body}`);
    assert.equal(response.statusCode, row.status, response.body);
    assert.match(String(response.headers['content-type']), /^application\/json/);
    const body = response.json() as { error?: { code?: unknown; message?: unknown; field?: unknown } };
    assert.deepEqual(Object.keys(body), ['error'], response.body);
    assert.equal(body.error?.code, row.code, response.body);
    assert.equal(body.error?.field, row.field, response.body);
    assert.equal(typeof body.error?.message, 'string');
    assert.ok(Object.keys(body.error ?? {}).every((key) => ['code', 'message', 'field'].includes(key)));

    assert.equal(await countModels(), countBefore, 'no model is stored');
    assert.deepEqual(await targetRow(), targetBefore, 'the target model is unchanged');
  });
}

test('a real cursor, tampered with, is a 400 naming cursor', async () => {
  const get = (url: string) => app.inject({ method: 'GET', url, headers: { 'x-api-key': keys.reader } });
  const first = await get(q({ sort: '-context_window', limit: '1' }));
  assert.equal(first.statusCode, 200, first.body);
  const cursor = (first.json() as { next_cursor: string | null }).next_cursor;
  assert.ok(cursor !== null);
  const payload = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as Record<string, unknown>;

  const tampered: [string, Record<string, string>][] = [
    ['used with the ascending sort', { sort: 'context_window', cursor }],
    ['used without its sort', { cursor }],
    ['truncated', { sort: '-context_window', cursor: cursor.slice(0, -3) }],
    ['value made text', { sort: '-context_window', cursor: cursorOf({ ...payload, v: String(payload.v) }) }],
    ['value made 2^31', { sort: '-context_window', cursor: cursorOf({ ...payload, v: 2 ** 31 }) }],
    [
      'id made invalid',
      { sort: '-context_window', cursor: cursorOf({ ...payload, id: `${payload.id}'--` }) },
    ],
    ['sort rewritten', { sort: '-vendor_id', cursor: cursorOf({ ...payload, s: '-vendor_id' }) }],
  ];
  for (const [what, params] of tampered) {
    const response = await get(q(params));
    assert.equal(response.statusCode, 400, `${what}: ${response.body}`);
    const { error } = response.json() as { error: { code: string; field?: string } };
    assert.deepEqual(
      { code: error.code, field: error.field },
      { code: 'VALIDATION_FAILED', field: 'cursor' },
      what,
    );
  }
  // Untouched, it still gives the second page.
  const second = await get(q({ sort: '-context_window', limit: '1', cursor }));
  assert.equal(second.statusCode, 200, second.body);
  assert.equal((second.json() as { items: unknown[] }).items.length, 1);
});

test('after every row: the table is intact and nothing was created or changed', async () => {
  const { rows: stored } = await services.pool.query<{ model_id: string; version: number }>(
    'SELECT model_id, version FROM models ORDER BY model_id',
  );
  assert.deepEqual(stored, [
    { model_id: TARGET, version: 1 },
    { model_id: 'bad-input/target-2', version: 1 },
  ]);
  const response = await app.inject({ method: 'GET', url: '/models', headers: { 'x-api-key': keys.reader } });
  assert.equal(response.statusCode, 200);
  assert.deepEqual(
    (response.json() as { items: { model_id: string }[] }).items.map((model) => model.model_id),
    [TARGET, 'bad-input/target-2'],
  );
});
