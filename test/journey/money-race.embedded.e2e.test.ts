import { moneyRaceSuite } from './money-race.ts'

moneyRaceSuite('embedded', 'orchestration')
moneyRaceSuite('embedded', 'choreography')
