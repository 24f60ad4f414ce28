export { KeyvBackend, type KeyvBackendOptions, keyvBackend } from './keyv-backend.js'
export { KeyvStoreFromBackend, type KeyvStoreOptions, toKeyvStore } from './keyv-store.js'
