import { moneyRaceSuite } from './money-race.ts'

moneyRaceSuite('kafka', 'orchestration')
moneyRaceSuite('kafka', 'choreography')
