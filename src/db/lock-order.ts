/**
 * One order for the keys a statement inserts, the same in every session: two transactions that
 * insert overlapping unique keys in this order wait for each other at most once, never in a cycle.
 */
export const compareKeys = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)
