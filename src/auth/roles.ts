/**
 * API key roles, each allowed everything the ones before it are:
 * - `reader`: read models and filters;
 * - `writer`: also register, update and deactivate models;
 * - `admin`: also administrative actions (dead-letter replay, …).
 */
export const ROLES = ['reader', 'writer', 'admin'] as const;
export type Role = (typeof ROLES)[number];

export function roleAllows(role: Role, required: Role): boolean {
  return ROLES.indexOf(role) >= ROLES.indexOf(required);
}

export function isRole(value: string): value is Role {
  return (ROLES as readonly string[]).includes(value);
}
