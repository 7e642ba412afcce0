import { lateAnswersSuite, lateDispatchChoreographySuite } from './late-answers.suite.ts'

lateAnswersSuite('embedded')
lateDispatchChoreographySuite('embedded')
