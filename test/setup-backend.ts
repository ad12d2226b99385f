/**
 * vitest setupFile: selects the tensor backend before each test file runs, honouring FLUX_BACKEND
 * (`tensorflow` | `wasm` | `cpu` | `auto`; default `auto`). Test code then just imports
 * '@tensorflow/tfjs-core' and uses it. `pnpm test` (scripts/test-all-backends.mjs) runs the suite once
 * per available backend. A forced backend that is unavailable fails every file with its BackendError.
 */
import { initBackend } from '../packages/flux/src/runtime/backend.ts';

await initBackend({ quiet: true });
