import { describe, expect, it } from 'vitest';
import { main } from '../examples/quick-start.js';

describe('examples', () => {
  it('the README quick start runs', async () => {
    await expect(main()).resolves.toBeUndefined();
  });
});
