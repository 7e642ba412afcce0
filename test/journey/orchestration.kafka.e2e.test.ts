import { journeySuite } from './suite.ts'

journeySuite('kafka', 'orchestration')
