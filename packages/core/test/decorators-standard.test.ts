import { decoratorCases } from './decorator-cases.js'

decoratorCases('standard')
