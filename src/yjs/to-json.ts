import * as Y from 'yjs';
import { hardenYjs } from './harden.js';
import { leaveFormattingAsWrittenIn } from './formatting.js';

// Small updates must not cost a node seconds, gigabytes or its stack (src/yjs/harden.ts).
hardenYjs();

/** Any Yjs type, whatever its events (Yjs types are invariant in their event type). */
type YType = Y.AbstractType<any>;

/**
 * The document as JSON (DESIGN.md §7). Root types that arrived by update have
 * no declared type, so each is inferred on a scratch copy (typing a live root
 * is permanent): only map entries → object; string, format or embed content →
 * string; XML content → XML string; anything else → array; empty roots left out.
 */
export function docToJson(doc: Y.Doc): Record<string, unknown> {
  const scratch = new Y.Doc({ gc: true });
  leaveFormattingAsWrittenIn(scratch);
  Y.applyUpdate(scratch, Y.encodeStateAsUpdate(doc));
  const out: Record<string, unknown> = {};
  // Too deep for Yjs's recursion (or for JSON.stringify's) wherever it is read: rendered within the bound, the same way every time.
  const render = nestingDepth(scratch) > MAX_RENDER_DEPTH ? (t: YType) => tolerant(t, 0) : rendered;
  for (const [name, type] of [...scratch.share].sort(([a], [b]) => a.localeCompare(b))) {
    const kind = inferKind(type);
    if (kind === 'map') out[name] = render(scratch.getMap(name));
    else if (kind === 'text') out[name] = scratch.getText(name).toString();
    else if (kind === 'xml') out[name] = render(scratch.getXmlFragment(name));
    else if (kind === 'array') out[name] = render(scratch.getArray(name));
  }
  scratch.destroy();
  return out;
}

function inferKind<T>(type: Y.AbstractType<T>): 'map' | 'text' | 'xml' | 'array' | 'empty' {
  if (type instanceof Y.Map) return type.size ? 'map' : 'empty';
  if (type instanceof Y.Text) return type.length ? 'text' : 'empty';
  if (type instanceof Y.XmlFragment) return type.length ? 'xml' : 'empty';
  if (type instanceof Y.Array) return type.length ? 'array' : 'empty';
  let item = type._start;
  let sawList = false;
  while (item) {
    if (!item.deleted) {
      sawList = true;
      const c = item.content;
      if (c instanceof Y.ContentString || c instanceof Y.ContentFormat || c instanceof Y.ContentEmbed) return 'text';
      if (c instanceof Y.ContentType && (c.type instanceof Y.XmlElement || c.type instanceof Y.XmlText || c.type instanceof Y.XmlHook)) return 'xml';
      return 'array';
    }
    item = item.right;
  }
  if (sawList) return 'array';
  for (const item of type._map.values()) if (!item.deleted) return 'map';
  return 'empty';
}

/**
 * Types nested deeper than this render as null. Yjs renders recursively, and
 * nothing bounds how deep types nest (each one names its parent): without a
 * bound, a deep enough chain would make every read of the document fail.
 */
export const MAX_RENDER_DEPTH = 200;

/** How deep types nest in the document (a root is 0), without recursion. */
function nestingDepth(doc: Y.Doc): number {
  const depths = new Map<YType, number>();
  const depthOf = (type: YType): number => {
    const chain: YType[] = [];
    let t: YType | null = type;
    let d = 0;
    while (t) {
      const known = depths.get(t);
      if (known !== undefined) {
        d = known;
        break;
      }
      chain.push(t);
      t = (t._item?.parent as YType | undefined) ?? null;
      if (!t) d = -1;
    }
    for (let i = chain.length - 1; i >= 0; i--) depths.set(chain[i]!, ++d);
    return d;
  };
  let max = 0;
  for (const structs of doc.store.clients.values()) {
    for (const s of structs) if (s instanceof Y.Item && s.content instanceof Y.ContentType) max = Math.max(max, depthOf(s.content.type));
  }
  return max;
}

/**
 * Yjs's own JSON of a type, or, when some content makes Yjs's rendering throw
 * (types nested too deep for its recursion; in XML, which Yjs renders by
 * calling `toString` on every child, a null child or an object with a
 * `toString` key), the same rendering with every value turned into a string
 * as JavaScript does where it can.
 */
function rendered(type: YType): unknown {
  try {
    return type.toJSON();
  } catch {
    return tolerant(type, 0);
  }
}

function tolerant(type: YType, depth: number): unknown {
  if (depth >= MAX_RENDER_DEPTH) return null;
  const json = (v: unknown) => (v instanceof Y.AbstractType ? tolerant(v, depth + 1) : v);
  if (type instanceof Y.XmlFragment || type instanceof Y.XmlText) return xmlString(type, depth);
  if (type instanceof Y.Map) {
    const out: Record<string, unknown> = {};
    for (const [key, v] of type.entries()) out[key] = json(v);
    return out;
  }
  if (type instanceof Y.Array) return type.toArray().map(json);
  if (type instanceof Y.Text) return type.toString();
  return undefined;
}

/** An XML type as Yjs's `toString` renders it, with `str` for every value it would turn into a string. */
function xmlString(node: unknown, depth: number): string {
  if (depth >= MAX_RENDER_DEPTH) return '';
  const inner = (v: unknown) => xmlString(v, depth + 1);
  if (node instanceof Y.XmlElement) {
    const attrs = node.getAttributes() as Record<string, unknown>;
    const keys: string[] = [];
    for (const key in attrs) keys.push(key);
    const attrString = keys.sort().map((key) => ` ${key}="${inner(attrs[key])}"`).join('');
    const name = node.nodeName.toLocaleLowerCase();
    return `<${name}${attrString}>${node.toArray().map(inner).join('')}</${name}>`;
  }
  if (node instanceof Y.XmlFragment) return node.toArray().map(inner).join('');
  if (node instanceof Y.XmlText) return (node.toDelta() as { insert: unknown; attributes?: Record<string, unknown> }[]).map((d) => formatted(d, inner)).join('');
  if (node instanceof Y.Text) return node.toString();
  return str(node);
}

/** One delta of XML text: its insert wrapped in one element per format, as YXmlText.toString does. */
function formatted(delta: { insert: unknown; attributes?: Record<string, unknown> }, inner: (v: unknown) => string): string {
  const tags: string[] = [];
  for (const name in delta.attributes) tags.push(name);
  tags.sort();
  let out = '';
  for (const name of tags) {
    const value = delta.attributes![name] as Record<string, unknown>;
    const keys: string[] = [];
    for (const key in value) keys.push(key);
    out += `<${name}${keys.sort().map((key) => ` ${key}="${inner(value[key])}"`).join('')}>`;
  }
  out += inner(delta.insert);
  for (const name of tags.reverse()) out += `</${name}>`;
  return out;
}

/** A value as a string, as JavaScript turns it into one, except where that throws: null and undefined, and objects that have a `toString` or `valueOf` key. */
function str(v: unknown): string {
  if (v === null || typeof v !== 'object') return String(v);
  if (v instanceof Uint8Array) return v.join(',');
  if (Array.isArray(v)) return v.map((e) => (e === null || e === undefined ? '' : str(e))).join(',');
  if (v instanceof Y.AbstractType || v instanceof Y.Doc) return Object.prototype.toString.call(v);
  return '[object Object]';
}
