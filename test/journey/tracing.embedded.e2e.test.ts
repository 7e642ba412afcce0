import { fastifyOtelPinned, tracingSuite } from './tracing.suite.ts'

tracingSuite('embedded')
fastifyOtelPinned()
