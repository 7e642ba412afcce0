import { lateAnswersSuite, lateDispatchChoreographySuite } from './late-answers.suite.ts'

lateAnswersSuite('kafka')
lateDispatchChoreographySuite('kafka')
