-- Up Migration

-- metrics_histogram_add merges two packed histograms (index << 40 | count, sorted by index, one entry per
-- index: LogLinearHistogram.toPacked and this function both write them so) by walking both arrays once,
-- instead of unnest + GROUP BY + a sorted array_agg. Every rollup upsert calls it twice per row; at 1,000
-- requests/s those upserts were 40% of PostgreSQL's execution time (pg_stat_statements, end-to-end
-- benchmark). Merging 2,000 pairs of a 260-bucket and a 21-bucket histogram: 76 ms, against 198 ms.
-- The result is the same as before for such arrays; a NULL argument counts as empty.
CREATE OR REPLACE FUNCTION metrics_histogram_add(a bigint[], b bigint[]) RETURNS bigint[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  merged bigint[] := '{}';
  na integer := coalesce(cardinality(a), 0);
  nb integer := coalesce(cardinality(b), 0);
  i integer := 1;
  j integer := 1;
  ka bigint;
  kb bigint;
BEGIN
  IF nb = 0 THEN RETURN coalesce(a, '{}'); END IF;
  IF na = 0 THEN RETURN b; END IF;
  LOOP
    IF i > na THEN RETURN merged || b[j:nb]; END IF;
    IF j > nb THEN RETURN merged || a[i:na]; END IF;
    ka := a[i] >> 40;
    kb := b[j] >> 40;
    IF ka < kb THEN
      merged := merged || a[i];
      i := i + 1;
    ELSIF kb < ka THEN
      merged := merged || b[j];
      j := j + 1;
    ELSE
      merged := merged || (a[i] + (b[j] & 1099511627775));
      i := i + 1;
      j := j + 1;
    END IF;
  END LOOP;
END
$$;

-- Down Migration

CREATE OR REPLACE FUNCTION metrics_histogram_add(a bigint[], b bigint[]) RETURNS bigint[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT coalesce(array_agg((k << 40) | c ORDER BY k), '{}')
  FROM (
    SELECT e >> 40 AS k, sum(e & 1099511627775)::bigint AS c
    FROM unnest(coalesce(a, '{}') || coalesce(b, '{}')) AS e
    GROUP BY 1
  ) AS merged
$$;
