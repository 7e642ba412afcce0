import { lateAnswersSuite } from './late-answers.suite.ts'

lateAnswersSuite('kafka')
