/** Percentiles of a set of samples (exact: sorts a copy). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] as number;
}

export function sortedCopy(samples: readonly number[]): number[] {
  return Float64Array.from(samples).sort() as unknown as number[];
}

export function formatMs(ms: number): string {
  return ms < 10 ? `${ms.toFixed(2)}ms` : ms < 1000 ? `${ms.toFixed(0)}ms` : `${(ms / 1000).toFixed(1)}s`;
}
