import type { Grant } from '../tokens/grant.js';

/** Grants kept per subject in each pool. */
export const MAX_GRANTS_PER_SUBJECT = 8;
/** Subjects whose unverifiable grants are kept (a relay keeps grants of origins it may never trust): bounded against a flood of made-up subjects. */
export const MAX_UNVERIFIED_SUBJECTS = 50_000;
/**
 * Characters of unverifiable grants kept in all, those their subjects
 * presented aside: a grant may be 16 KiB, so the caps on subjects and on
 * grants per subject alone would let one peer have this node hold and store
 * gigabytes of them (50 000 subjects × 8 × 16 KiB). This leaves room for one
 * ordinary grant (about 600 characters) for each of MAX_UNVERIFIED_SUBJECTS.
 */
export const MAX_UNVERIFIED_GRANT_CHARS = 32 * 1024 * 1024;
/** Grants from trusted authorities kept in all: only those authorities can make more, so this is a backstop, not a defence. */
export const MAX_TRUSTED_GRANTS = 200_000;

/** An unverifiable grant held to pass on: its claimed expiry, and whether its subject presented it itself. */
interface Unverified {
  readonly exp: number;
  self: boolean;
}

/** What adding a grant did: whether it is now held (new), and the grants of its subject it pushed out. */
export interface GrantChange {
  readonly added: boolean;
  readonly evicted: readonly string[];
}

const NONE: GrantChange = { added: false, evicted: [] };

/**
 * The grant tokens a node holds, by subject, in two pools with their own
 * caps (DESIGN.md §10). Grants that verify against a trusted authority are
 * never displaced by the others: only a newer trusted grant of the same
 * subject pushes out its oldest one. Grants this node cannot verify (their
 * authority is not one it trusts) are kept only to pass on, bounded per
 * subject, in subjects and in characters; among them, those the subject
 * presented itself win over those anyone else relayed.
 *
 * Residual limitation: a peer can still push out an unverifiable grant that
 * reached this node through a relay (not from its subject) with made-up
 * ones for the same subject, since nothing tells them apart here; a node that
 * trusts the authority keeps the genuine one, and the subject presents it
 * again in each of its sessions. Likewise, once made-up grants use up the
 * characters, this node no longer keeps new unverifiable grants that reach
 * it through relays (their subjects still present their own). Which grants
 * presented their subject themselves is not stored: after a restart they
 * compete as relayed ones until the subject presents them again.
 */
export class GrantPool {
  readonly #trusted = new Map<string, Grant[]>();
  readonly #unverified = new Map<string, Map<string, Unverified>>();
  #trustedCount = 0;
  /** Characters of the unverifiable grants held. */
  #unverifiedChars = 0;

  holds(sub: string, token: string): boolean {
    return !!this.#trusted.get(sub)?.some((g) => g.token === token) || !!this.#unverified.get(sub)?.has(token);
  }

  /** Grants from trusted authorities naming `sub`. */
  trusted(sub: string): readonly Grant[] {
    return this.#trusted.get(sub) ?? [];
  }

  /** Every token naming `sub`: trusted ones first, then those its subject presented. */
  tokens(sub: string): string[] {
    const unverified = [...(this.#unverified.get(sub) ?? [])].sort(([, a], [, b]) => Number(b.self) - Number(a.self)).map(([t]) => t);
    return [...this.trusted(sub).map((g) => g.token), ...unverified];
  }

  /** What `sub` itself presented, or a trusted authority vouches for: never what others pushed naming it. */
  presented(sub: string): string[] {
    const self = [...(this.#unverified.get(sub) ?? [])].filter(([, u]) => u.self).map(([t]) => t);
    return [...this.trusted(sub).map((g) => g.token), ...self];
  }

  /** Every held token with its subject. */
  *entries(): Generator<{ sub: string; token: string; self: boolean }> {
    for (const [sub, grants] of this.#trusted) for (const g of grants) yield { sub, token: g.token, self: false };
    for (const [sub, held] of this.#unverified) for (const [token, u] of held) yield { sub, token, self: u.self };
  }

  /** Holds a verified grant; `force` ignores the caps (re-sorting what is already held). */
  addTrusted(g: Grant, force = false): GrantChange {
    if (this.holds(g.sub, g.token)) return NONE;
    if (!force && this.#trustedCount >= MAX_TRUSTED_GRANTS) return NONE;
    const list = [...this.trusted(g.sub), g];
    const evicted: string[] = [];
    while (!force && list.length > MAX_GRANTS_PER_SUBJECT) {
      const oldest = list.reduce((a, b) => (b.exp < a.exp ? b : a));
      list.splice(list.indexOf(oldest), 1);
      evicted.push(oldest.token);
    }
    this.#trusted.set(g.sub, list);
    this.#trustedCount += 1 - evicted.length;
    return { added: !evicted.includes(g.token), evicted };
  }

  /**
   * Holds a grant this node cannot verify, to pass on. One its subject
   * presented itself is not subject to the caps on subjects and characters
   * (one subject per authenticated peer) and is pushed out only by another
   * such grant.
   */
  addUnverified(sub: string, token: string, exp: number, self: boolean, force = false): GrantChange {
    const held = this.#unverified.get(sub);
    const known = held?.get(token);
    if (known) {
      known.self ||= self;
      return NONE;
    }
    if (this.trusted(sub).some((g) => g.token === token)) return NONE;
    if (!force && !self && ((!held && this.#unverified.size >= MAX_UNVERIFIED_SUBJECTS) || this.#unverifiedChars + token.length > MAX_UNVERIFIED_GRANT_CHARS)) return NONE;
    const set = held ?? this.#unverified.set(sub, new Map()).get(sub)!;
    set.set(token, { exp, self });
    this.#unverifiedChars += token.length;
    const evicted: string[] = [];
    while (!force && set.size > MAX_GRANTS_PER_SUBJECT) {
      const victim = lowest(set, false) ?? lowest(set, true)!;
      set.delete(victim);
      this.#unverifiedChars -= victim.length;
      evicted.push(victim);
    }
    return { added: !evicted.includes(token), evicted };
  }
}

/** The token with the lowest claimed expiry among those presented (or not) by their subject. */
function lowest(set: Map<string, Unverified>, self: boolean): string | undefined {
  let best: [string, number] | undefined;
  for (const [token, u] of set) if (u.self === self && (!best || u.exp < best[1])) best = [token, u.exp];
  return best?.[0];
}
