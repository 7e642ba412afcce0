import { tracingSuite } from './tracing.suite.ts'

tracingSuite('kafka')
