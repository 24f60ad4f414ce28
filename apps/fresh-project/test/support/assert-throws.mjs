// Preloaded into every README example: a failed console.assert fails the example (it only logs by default).
console.assert = (ok, ...message) => {
  if (!ok) throw new Error(`README assertion failed ${message.join(' ')}`)
}
