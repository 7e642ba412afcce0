import { personalDataSuite } from './personal-data.suite.ts'

personalDataSuite('embedded', 'orchestration')
personalDataSuite('embedded', 'choreography')
