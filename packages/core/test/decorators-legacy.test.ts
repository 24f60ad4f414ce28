import { decoratorCases } from './decorator-cases.js'

decoratorCases('legacy')
