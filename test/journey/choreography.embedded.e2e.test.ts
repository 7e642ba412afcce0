import { journeySuite } from './suite.ts'

journeySuite('embedded', 'choreography')
