import { VersioningType, type VersioningOptions } from '@nestjs/common'
import type { ApplicationConfig } from '@nestjs/core'

/** Nest's metadata key for `@Version()` and `@Controller({ version })`. */
const VERSION_METADATA = '__version__'

/**
 * Whether Nest's versioning of the application picks among the handlers of one URL by request
 * data that no `Vary` names: a header (`HEADER`), `Accept` (`MEDIA_TYPE`) or a function of the
 * request (`CUSTOM`). A CDN keying on the URL could not tell their responses apart, so
 * `cacheControl` makes them `private` (`settings.hiddenSelection`). URI versioning puts the
 * version in the URL; host routing is in what a CDN keys on.
 */
export function chosenByRequest(versioning: VersioningOptions | undefined): boolean {
  const type = versioning?.type
  return (
    type === VersioningType.HEADER || type === VersioningType.MEDIA_TYPE || type === VersioningType.CUSTOM
  )
}

/**
 * Controllers of applications that `CacheModule` saw start, and whether one of them versions by
 * the request (`true` wins: a class in two applications is private in both). Read only by an
 * interceptor made outside Nest's injector (`new CacheResponseInterceptor()`), which has no
 * application config of its own.
 */
const controllersSeen = new WeakMap<Function, boolean>()

/** Notes the controllers of `owners` as routed with the versioning of `config`. */
export function noteVersioning(owners: Iterable<Function>, config: ApplicationConfig): void {
  const hidden = chosenByRequest(config.getVersioning())
  for (const owner of owners) controllersSeen.set(owner, hidden || controllersSeen.get(owner) === true)
}

/**
 * Whether `handler` of `owner` is chosen by the request, by its application's `config` when known;
 * otherwise as `CacheModule` noted its controller at start-up; otherwise (no module) whenever the
 * handler or its controller has a version, since its application may route versions by a header.
 */
export function handlerChosenByRequest(
  config: ApplicationConfig | undefined,
  owner: Function,
  handler: Function,
): boolean {
  if (config !== undefined) return chosenByRequest(config.getVersioning())
  const noted = controllersSeen.get(owner)
  if (noted !== undefined) return noted
  const api = Reflect as unknown as { getMetadata?(key: unknown, target: object): unknown }
  return (
    api.getMetadata?.(VERSION_METADATA, handler) !== undefined ||
    api.getMetadata?.(VERSION_METADATA, owner) !== undefined
  )
}
