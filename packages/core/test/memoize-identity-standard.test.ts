import { identityCases } from './identity-cases.js'

identityCases('standard')
