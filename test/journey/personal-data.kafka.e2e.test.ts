import { personalDataSuite } from './personal-data.suite.ts'

personalDataSuite('kafka', 'orchestration')
personalDataSuite('kafka', 'choreography')
