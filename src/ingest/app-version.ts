/**
 * The integer column `app_version` of the exercise's table, filled from the dotted text so that
 * integer order is version order: major * 1,000,000 + minor * 1,000 + patch, each part compared
 * as a number (so 2.2.8 < 2.3.0 < 2.20, and 2.0 = 2.00 = 2.0.0). Versions that do not fit this
 * scheme (not dotted digits, a part above 999, a major above 2146, a non-zero fourth part) get
 * null rather than a number that would sort wrongly.
 */
export function encodeAppVersion(text: string): number | null {
  if (!/^\d{1,9}(\.\d{1,9})*$/.test(text)) return null
  const parts = text.split('.').map(Number)
  while (parts.length > 3 && parts.at(-1) === 0) parts.pop()
  if (parts.length > 3) return null
  const [major = 0, minor = 0, patch = 0] = parts
  if (minor > 999 || patch > 999 || major > 2146) return null
  return major * 1_000_000 + minor * 1_000 + patch
}
