/**
 * The small option checks every resolver of both sides uses, so a bad field is named the same
 * way everywhere.
 */

/** Checks `value` is an integer in [min, max], naming the field when not; returns it. */
export function checkInteger(field: string, value: number, min: number, max: number = Number.MAX_SAFE_INTEGER): number {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new RangeError(`${field}: expected an integer from ${min} to ${max}, got ${String(value)}`);
  }
  return value;
}

/** Checks `value` is a number in [min, max], naming the field when not; returns it. */
export function checkFraction(field: string, value: number, min: number, max: number): number {
  if (typeof value !== 'number' || !(value >= min && value <= max)) {
    throw new RangeError(`${field}: expected a number from ${min} to ${max}, got ${String(value)}`);
  }
  return value;
}
