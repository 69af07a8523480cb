import type { z } from 'zod';

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/**
 * `$.peers[0].publicKey` from a zod issue path; a key that is not an
 * identifier (a cutoff's doc hash, `"*"`, `"<id>:<feed>"`) in brackets.
 */
export function jsonPath(path: readonly PropertyKey[]): string {
  let out = '$';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += IDENTIFIER.test(String(p)) ? `.${String(p)}` : `[${JSON.stringify(String(p))}]`;
  }
  return out;
}

/** The first problem of a failed zod parse, as file-independent text; an unknown key's path names the key. */
export function firstIssue(error: z.ZodError): { path: string; problem: string } {
  const issue = error.issues[0]!;
  if (issue.code === 'unrecognized_keys') {
    const problem = `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
    return { path: jsonPath([...issue.path, issue.keys[0]!]), problem };
  }
  // A record key's own problem ("expected <origin id>:<feed>") sits inside zod's generic "Invalid key in record".
  const problem = issue.code === 'invalid_key' ? (issue.issues[0]?.message ?? issue.message) : issue.message;
  return { path: jsonPath(issue.path), problem };
}
