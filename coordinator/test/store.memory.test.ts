import { MemoryStore } from '../src/store/index.js';
import { defineStoreContract } from './store.contract.js';

defineStoreContract('MemoryStore({ journal: true })', () => new MemoryStore({ journal: true }));
