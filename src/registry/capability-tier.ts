/**
 * Capability tiers, from most to least capable. Documented in docs/reference/api.md and the OpenAPI document;
 * the database CHECK constraint lists the same values.
 */
export const CAPABILITY_TIERS = {
  Tier_1: 'Frontier: the most capable general models (long reasoning, complex tool use).',
  Tier_2: 'Advanced: strong general-purpose models at a lower cost than Tier_1.',
  Tier_3: 'Efficient: fast, inexpensive models for routine tasks.',
  Tier_4: 'Lightweight: small or specialised models (classification, extraction, embeddings).',
} as const;

export type CapabilityTier = keyof typeof CAPABILITY_TIERS;

export const CAPABILITY_TIER_NAMES = Object.keys(CAPABILITY_TIERS) as CapabilityTier[];
