// Loaded into the ledger child with `--import` (the ledger's own code is not changed for the
// bench): the ledger exits if the bench that started it dies. See parent-watch.ts.
import { exitWhenParentGoes } from './parent-watch.js';

exitWhenParentGoes();
