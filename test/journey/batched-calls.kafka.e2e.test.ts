import { batchedCallsSuite } from './batched-calls.suite.ts'

batchedCallsSuite('kafka', 'orchestration')
batchedCallsSuite('kafka', 'choreography')
