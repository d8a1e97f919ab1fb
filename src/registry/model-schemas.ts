/**
 * TypeBox schemas of the registry: they validate requests, serialise responses, type the code and feed
 * the OpenAPI document. No web framework here.
 */
import { type Static, Type } from 'typebox';
import { pageFields } from '../page-fields.ts';
import { CAPABILITY_TIER_NAMES, CAPABILITY_TIERS } from './capability-tier.ts';

/** Upper bounds keep values inside PostgreSQL's integer and sane for a price list. */
export const LIMITS = {
  modelIdMaxLength: 128,
  contextWindowMax: 1_000_000_000,
  costPerMilMax: 1_000_000,
  pageSizeMax: 200,
  pageSizeDefault: 50,
  cursorMaxLength: 512,
} as const;

/**
 * 1–128 characters of `A–Z a–z 0–9 . _ : / -`, except `.` and `..`: URL handling resolves those as dot
 * segments even when percent-encoded, so no request could ever reach such a model.
 */
export const MODEL_ID_PATTERN = '^(?!\\.{1,2}$)[A-Za-z0-9._:/-]+$';

export const ModelId = Type.String({
  minLength: 1,
  maxLength: LIMITS.modelIdMaxLength,
  pattern: MODEL_ID_PATTERN,
  description: "Unique model identifier: 1–128 characters of A–Z a–z 0–9 . _ : / -, but not '.' or '..'",
  examples: ['openai/gpt-4-turbo'],
});

export const VendorId = Type.String({
  minLength: 1,
  maxLength: 64,
  pattern: '^[A-Za-z0-9][A-Za-z0-9 ._-]*$',
  description: 'Vendor name: 1–64 characters of A–Z a–z 0–9 space . _ -, starting with a letter or digit',
  examples: ['OpenAI'],
});

export const CapabilityTierSchema = Type.Enum(CAPABILITY_TIER_NAMES, {
  description: Object.entries(CAPABILITY_TIERS)
    .map(([tier, meaning]) => `${tier}: ${meaning}`)
    .join(' '),
});

const ContextWindow = Type.Integer({
  minimum: 1,
  maximum: LIMITS.contextWindowMax,
  description: 'Context window in tokens',
});
const CostPerMil = (what: string) =>
  Type.Number({
    minimum: 0,
    maximum: LIMITS.costPerMilMax,
    description: `${what} cost in USD per million tokens`,
  });

const modelFields = {
  vendor_id: VendorId,
  capability_tier: CapabilityTierSchema,
  context_window: ContextWindow,
  cost_in_per_mil: CostPerMil('Input'),
  cost_out_per_mil: CostPerMil('Output'),
  function_call_support: Type.Boolean({ description: 'Whether the model supports function/tool calling' }),
  is_active: Type.Boolean({ description: 'Inactive models stay stored but are flagged' }),
};

export const CreateModelBody = Type.Object(
  {
    model_id: ModelId,
    ...modelFields,
    is_active: Type.Optional(Type.Boolean({ default: true, description: 'Defaults to true' })),
  },
  { additionalProperties: false },
);
export type CreateModelInput = Static<typeof CreateModelBody>;

export const UpdateModelBody = Type.Object(
  {
    vendor_id: Type.Optional(modelFields.vendor_id),
    capability_tier: Type.Optional(modelFields.capability_tier),
    context_window: Type.Optional(modelFields.context_window),
    cost_in_per_mil: Type.Optional(modelFields.cost_in_per_mil),
    cost_out_per_mil: Type.Optional(modelFields.cost_out_per_mil),
    function_call_support: Type.Optional(modelFields.function_call_support),
    is_active: Type.Optional(modelFields.is_active),
  },
  {
    additionalProperties: false,
    minProperties: 1,
    description: 'Any subset of the fields; model_id cannot change',
  },
);
export type UpdateModelInput = Static<typeof UpdateModelBody>;

export const ModelSchema = Type.Object(
  {
    model_id: ModelId,
    ...modelFields,
    version: Type.Integer({ minimum: 1, description: 'Starts at 1 and grows by 1 on every change' }),
    created_at: Type.String({ format: 'date-time' }),
    updated_at: Type.String({ format: 'date-time' }),
  },
  { additionalProperties: false },
);
export type Model = Static<typeof ModelSchema>;

/** Columns a filter can sort by; `-` in front sorts descending. model_id always breaks ties. */
export const SORT_FIELDS = [
  'model_id',
  'vendor_id',
  'capability_tier',
  'context_window',
  'cost_in_per_mil',
  'cost_out_per_mil',
  'created_at',
  'updated_at',
] as const;
export type SortField = (typeof SORT_FIELDS)[number];
export const SORT_VALUES = SORT_FIELDS.flatMap((field) => [field, `-${field}`]);

export const ModelFilterQuery = Type.Object(
  {
    vendor_id: Type.Optional(VendorId),
    capability_tier: Type.Optional(CapabilityTierSchema),
    is_active: Type.Optional(Type.Boolean()),
    function_call_support: Type.Optional(Type.Boolean()),
    min_context_window: Type.Optional(ContextWindow),
    max_cost_in_per_mil: Type.Optional(CostPerMil('Maximum input')),
    max_cost_out_per_mil: Type.Optional(CostPerMil('Maximum output')),
    sort: Type.Optional(
      Type.Enum(SORT_VALUES, {
        default: 'model_id',
        description: 'Sort column; prefix with - for descending',
      }),
    ),
    ...pageFields(LIMITS, ' (same sort)'),
  },
  { additionalProperties: false },
);
export type ModelFilterInput = Static<typeof ModelFilterQuery>;

export const ModelPageSchema = Type.Object({
  items: Type.Array(ModelSchema),
  next_cursor: Type.Union([Type.String(), Type.Null()], {
    description: 'Pass as `cursor` for the next page',
  }),
});
export type ModelPage = Static<typeof ModelPageSchema>;

export const ModelIdParams = Type.Object({ model_id: ModelId }, { additionalProperties: false });
