import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { ConfigError } from '../errors.js';
import { firstIssue } from './json-path.js';
import { parseJson } from './node-config.js';

const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
const jws = z.string().max(16 * 1024).regex(COMPACT_JWS, 'expected a compact JWS');

const GrantsFileSchema = z.strictObject({
  grants: z.array(jws).default([]),
  revocations: z.array(jws).default([]),
});

/** A node's grants file: grants it holds, revocations it was handed (DESIGN.md §10). */
export interface GrantsFile {
  readonly grants: readonly string[];
  readonly revocations: readonly string[];
}

export const EMPTY_GRANTS: GrantsFile = { grants: [], revocations: [] };

export function parseGrantsFile(file: string, json: unknown): GrantsFile {
  const parsed = GrantsFileSchema.safeParse(json);
  if (!parsed.success) {
    const { path, problem } = firstIssue(parsed.error);
    throw new ConfigError(file, path, problem);
  }
  return parsed.data;
}

/** Reads the grants file; a missing file is an empty one. */
export async function loadGrantsFile(file: string): Promise<GrantsFile> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return EMPTY_GRANTS;
    throw new ConfigError(file, '$', `cannot read: ${(err as NodeJS.ErrnoException).code}`);
  }
  return parseGrantsFile(file, parseJson(file, text));
}
