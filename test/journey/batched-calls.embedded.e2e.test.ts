import { batchedCallsSuite } from './batched-calls.suite.ts'

batchedCallsSuite('embedded', 'orchestration')
batchedCallsSuite('embedded', 'choreography')
