import type { z } from 'zod';

/** `$.peers[0].publicKey` from a zod issue path. */
export function jsonPath(path: readonly PropertyKey[]): string {
  let out = '$';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : `.${String(p)}`;
  return out;
}

/** The first problem of a failed zod parse, as file-independent text. */
export function firstIssue(error: z.ZodError): { path: string; problem: string } {
  const issue = error.issues[0]!;
  let problem = issue.message;
  if (issue.code === 'unrecognized_keys') problem = `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
  return { path: jsonPath(issue.path), problem };
}
