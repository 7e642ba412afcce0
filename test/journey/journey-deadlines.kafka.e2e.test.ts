import { journeyDeadlinesSuite } from './journey-deadlines.suite.ts'

journeyDeadlinesSuite('kafka')
