/**
 * The registry's use cases: the repository behind two read caches (models by id, filter pages), with
 * writes invalidating what they change. Every read says whether it was a cache hit, which the telemetry
 * of the request reports.
 */
import { ModelNotFoundError } from '../errors.ts';
import { filterCacheKey, normalizeFilter } from './model-filter.ts';
import type { ModelRepository, WriteResult } from './model-repository.ts';
import type {
  CreateModelInput,
  Model,
  ModelFilterInput,
  ModelPage,
  UpdateModelInput,
} from './model-schemas.ts';
import { type CachedRead, type CacheStats, ReadCache } from './read-cache.ts';

export interface ModelRegistryCacheOptions {
  /** Time a cached model or page is served, in milliseconds; 0 disables both caches. */
  ttlMs: number;
  /** Estimated bytes of models by id kept at most. */
  modelsMaxBytes: number;
  /** Estimated bytes of filter pages kept at most. */
  filtersMaxBytes: number;
}

export interface RegistryCacheStats {
  models: CacheStats;
  filters: CacheStats;
}

export class ModelRegistry {
  readonly #models: ReadCache<Model>;
  readonly #filters: ReadCache<ModelPage>;

  constructor(
    private readonly repository: ModelRepository,
    cache: ModelRegistryCacheOptions,
  ) {
    this.#models = new ReadCache({ ttlMs: cache.ttlMs, maxBytes: cache.modelsMaxBytes });
    this.#filters = new ReadCache({ ttlMs: cache.ttlMs, maxBytes: cache.filtersMaxBytes });
  }

  async register(input: CreateModelInput): Promise<Model> {
    const model = await this.repository.create(input);
    this.#invalidate(model.model_id);
    return model;
  }

  async get(modelId: string): Promise<CachedRead<Model>> {
    const read = await this.#models.read(modelId, () => this.repository.get(modelId));
    if (read.value === undefined) throw new ModelNotFoundError(modelId);
    return { value: read.value, hit: read.hit };
  }

  async update(modelId: string, patch: UpdateModelInput): Promise<WriteResult> {
    const result = await this.repository.update(modelId, patch);
    if (result.changed) this.#invalidate(modelId);
    return result;
  }

  async deactivate(modelId: string): Promise<WriteResult> {
    const result = await this.repository.deactivate(modelId);
    if (result.changed) this.#invalidate(modelId);
    return result;
  }

  async filter(input: ModelFilterInput): Promise<CachedRead<ModelPage>> {
    const filter = normalizeFilter(input);
    return this.#filters.read(filterCacheKey(filter), () => this.repository.filter(filter));
  }

  cacheStats(): RegistryCacheStats {
    return { models: this.#models.stats(), filters: this.#filters.stats() };
  }

  /** Any write can change any filter's result, so filter pages are dropped wholesale. */
  #invalidate(modelId: string): void {
    this.#models.delete(modelId);
    this.#filters.clear();
  }
}
