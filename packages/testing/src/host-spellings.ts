/**
 * Hosts a client may send in a spelling other than the one a URL gives them. A response cache keys
 * on the URL's spelling; a request whose Host is spelled otherwise must not be stored under its own
 * spelling, where invalidating the URL could never reach it.
 */

/**
 * `Host` header values not in the spelling a URL gives them (`new URL('http://' + host).host`),
 * each with that spelling: a port with leading zeros or written out when it is the default one,
 * IPv6 not compressed, an IPv4-mapped IPv6 address in dotted form, IPv4 in short, hexadecimal or
 * zero-padded form. An adapter bypasses a request that sends the first spelling, stores one that
 * sends the second, and an invalidation naming either spelling reaches that entry.
 */
export const HOST_SPELLINGS: readonly (readonly [sent: string, asUrl: string])[] = [
  ['shop.test:080', 'shop.test'],
  ['shop.test:08080', 'shop.test:8080'],
  ['[0:0:0:0:0:0:0:1]', '[::1]'],
  ['[::ffff:127.0.0.1]', '[::ffff:7f00:1]'],
  ['127.1', '127.0.0.1'],
  ['0x7f000001', '127.0.0.1'],
  ['127.000.000.001', '127.0.0.1'],
  ['1.2.3', '1.2.0.3'],
]

/**
 * `X-Forwarded-Host` values, each with the `X-Forwarded-Proto` it comes with, not in the spelling a
 * URL of that protocol gives them (a default port with leading zeros or written out, IPv6 not
 * compressed). Behind a trusted proxy an adapter bypasses each of them.
 */
export const FORWARDED_HOST_SPELLINGS: readonly (readonly [proto: 'http' | 'https', host: string])[] = [
  ['http', 'shop.test:080'],
  ['https', 'shop.test:0443'],
  ['https', '[0:0:0:0:0:0:0:1]:443'],
]
