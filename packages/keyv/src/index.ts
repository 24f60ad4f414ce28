export { KeyvBackend, type KeyvBackendOptions, keyvBackend } from './keyv-backend.js'
export {
  type BackendForNamespace,
  KeyvStoreFromBackend,
  type KeyvStoreOptions,
  toKeyvStore,
} from './keyv-store.js'
